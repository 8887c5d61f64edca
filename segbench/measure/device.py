"""Turning a device string into a usable ``torch.device``, and precision names into dtypes.

Every CUDA-only code path in :mod:`segbench.measure` is entered through
:func:`resolve_device`, so on a machine without CUDA asking for ``cuda`` is a
clear :class:`UserError` rather than an exception from deep inside torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from segbench.errors import UserError, did_you_mean
from segbench.measure.shapes import validate_device

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """The ``torch.device`` for ``device``; raises :class:`UserError` if it is not usable here."""
    validate_device(device)
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"device '{device}': CUDA is not available on this machine (torch {torch.__version__})"
            )
        count = torch.cuda.device_count()
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= count:
            raise UserError(
                f"device '{device}': this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}"
            )
        dev = torch.device("cuda", index)
    return dev


def resolve_precision(precision: str) -> torch.dtype:
    """The dtype for ``fp32`` / ``fp16`` / ``bf16``."""
    if precision not in PRECISIONS:
        raise UserError(
            f"precision: '{precision}' is not one of {', '.join(PRECISIONS)}{did_you_mean(precision, PRECISIONS)}"
        )
    return PRECISIONS[precision]


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights live (CPU for a model without parameters or buffers)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


@contextmanager
def on_device(device: torch.device) -> Iterator[None]:
    """Make a CUDA ``device`` the current one (events, streams and allocations default to it)."""
    if device.type != "cuda":
        yield
        return
    with torch.cuda.device(device):
        yield


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` intra-op CPU threads (None: leave as is); yields the count in effect."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UserError(f"threads: expected a positive integer or None, got {threads!r}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@contextmanager
def cudnn_benchmark(device: torch.device) -> Iterator[bool | None]:
    """On CUDA, turn ``cudnn.benchmark`` on (autotuned kernels, as deployments run); restore it after.

    Yields the setting in effect, or None on CPU where it does not apply.
    """
    if device.type != "cuda":
        yield None
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield True
    finally:
        torch.backends.cudnn.benchmark = before


@contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Leave the global RNG streams as they were: a measurement must not shift a later training run."""
    cuda = [device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        yield
