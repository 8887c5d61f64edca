"""Peak memory of one inference or one training step.

What ``MemoryStats.peak_bytes`` means: how far memory rose above what was
already resident (the model's weights and buffers, the input batch and, for a
training step, the optimizer state) while the step ran — activations,
gradients, workspaces and temporaries. ``resident_bytes`` is that baseline,
counted exactly from the tensors, so ``resident_bytes + peak_bytes`` is what
the step needs in all. One unmeasured step runs first, so one-time
initialisation (cuDNN autotuning, oneDNN kernel generation, optimizer state)
is not counted as the step's cost.

* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``,
  minus ``memory_allocated`` before the step. Tensor memory only: the caching
  allocator's reserve and the CUDA context are not included.
* CPU: the peak of the tensor bytes the step holds, from the PyTorch
  profiler's memory accounting (``profile_memory``: every allocation and free
  of the CPU allocator, in order; the peak of their running sum). It counts
  tensors only, like CUDA's figure, so it is a property of the model and the
  input: the same model gives the same bytes in every process (tested), which
  is what a memory regression verdict needs.
* CPU, secondary (``rss_peak_bytes``): growth of the process's resident set
  size, which also counts the allocator's heap state, libraries' scratch and
  anything else the process touches, and so moves between processes running
  identical code. It is recorded for capacity planning, never judged. The kernel's high-water mark
  (``VmHWM``) is reset through ``/proc/self/clear_refs`` (Linux) and freed heap
  memory is first handed back with ``malloc_trim`` (glibc), so memory that an
  earlier run freed but kept cannot silently absorb this step's allocations.
  The kernel counts RSS in pages through per-CPU counters, so the number is
  good to a few hundred KiB; it counts everything the process allocates
  meanwhile, so other threads of the same process must be idle (the runner
  holds the device exclusively while measuring). On a system without
  ``clear_refs`` the measurement is refused rather than guessed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segbench.engine.loss import segmentation_loss
from segbench.errors import UserError
from segbench.measure.device import cudnn_benchmark, on_device, preserved_rng, resolve_device
from segbench.measure.prepare import example_input, prepared_model
from segbench.measure.shapes import validate_input_shape
from segbench.models.outputs import forward_heads

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class MemoryStats:
    """Peak memory of one step above the resident baseline (see the module docstring)."""

    peak_bytes: int
    resident_bytes: int
    device: str
    train_step: bool
    input_shape: tuple[int, int, int, int]
    method: str
    #: CUDA only: ``max_memory_allocated`` during the step, weights included
    peak_allocated_bytes: int | None = None
    #: CPU only: growth of the resident set size during the step (secondary, not deterministic)
    rss_peak_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out


def measure_memory(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str = "cpu",
    *,
    train_step: bool = False,
    num_classes: int | None = None,
) -> MemoryStats:
    """Peak memory of one forward pass (inference) or one SGD training step of a batch of ``input_shape``.

    Inference runs in eval mode under ``torch.inference_mode()``. A training
    step (forward in train mode, the training loss on every head the
    model-output adapter reads, backward, SGD with momentum as the train loop
    uses) runs on a private copy, so the model's weights and BatchNorm
    statistics are untouched. ``num_classes`` (the dataset's) is checked
    against the model's output channels.
    """
    shape = validate_input_shape(input_shape)
    dev = resolve_device(device)
    if dev.type == "cpu":
        _check_rss_reset()
    with (
        on_device(dev),
        cudnn_benchmark(dev),
        preserved_rng(dev),
        prepared_model(model, dev, private_copy=train_step) as net,
    ):
        batch = example_input(shape, dev)
        step, optimizer = (
            _training_step(net, batch, num_classes)
            if train_step
            else (_inference_step(net, batch, num_classes), None)
        )
        step()  # unmeasured: one-time initialisation, optimizer state
        resident = _tensor_bytes(net, batch, optimizer)
        rss = None
        if dev.type == "cuda":
            peak, peak_allocated = _cuda_peak(step, dev)
            method = "cuda_max_memory_allocated"
        else:
            rss = _rss_peak(step)
            peak, peak_allocated = _tensor_peak(step), None
            method = "profiler_tensor_peak"
    return MemoryStats(
        peak_bytes=peak,
        resident_bytes=resident,
        device=str(dev),
        train_step=train_step,
        input_shape=shape,
        method=method,
        peak_allocated_bytes=peak_allocated,
        rss_peak_bytes=rss,
    )


def _inference_step(net: nn.Module, batch: torch.Tensor, num_classes: int | None) -> Callable[[], None]:
    net.eval()

    def step() -> None:
        with torch.inference_mode():
            forward_heads(net, batch, num_classes)

    return step


def _training_step(
    net: nn.Module, batch: torch.Tensor, num_classes: int | None
) -> tuple[Callable[[], None], torch.optim.Optimizer]:
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    # The loss value is irrelevant; its graph (softmax or sigmoid per pixel) is what training allocates.
    target = torch.zeros((batch.shape[0], *batch.shape[2:]), dtype=torch.long, device=batch.device)

    def step() -> None:
        try:
            heads = forward_heads(net, batch, num_classes)
        except ValueError as exc:
            if "Expected more than 1 value per channel" not in str(exc):
                raise
            raise UserError(
                f"measure_memory(train_step=True): {type(net).__name__} cannot take a training step at "
                f"batch size {batch.shape[0]}: {exc}. Measure the training step at batch size ≥ 2."
            ) from exc
        loss = segmentation_loss(heads, target, aux_weight=1.0, ignore_index=255)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, optimizer


def _tensor_bytes(net: nn.Module, batch: torch.Tensor, optimizer: torch.optim.Optimizer | None) -> int:
    tensors = [*net.parameters(), *net.buffers(), batch]
    if optimizer is not None:
        tensors += [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors)


def _cuda_peak(step: Callable[[], None], device: torch.device) -> tuple[int, int]:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return peak - before, peak


def _tensor_peak(step: Callable[[], None]) -> int:
    """The highest tensor bytes held above the start while ``step`` runs, by the profiler's allocation events.

    Frees of tensors allocated before the step (negative sizes) lower the
    running sum below zero; the peak is counted from the start, so it is the
    step's own growth, as on CUDA.
    """
    from torch.profiler import ProfilerActivity, profile

    # Kineto logs every start and stop (and, on a machine without a GPU, a failed device count) to
    # stderr, between the progress bars of every run; a user's own KINETO_LOG_LEVEL still wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    held = peak = 0
    for _, size in events:
        held += size
        peak = max(peak, held)
    return peak


def _rss_peak(step: Callable[[], None]) -> int:
    gc.collect()
    _malloc_trim()
    _CLEAR_REFS.write_text("5")  # reset VmHWM to the current resident set size
    before = _status_kib("VmRSS")
    step()
    return max(_status_kib("VmHWM") - before, 0) * 1024


def _check_rss_reset() -> None:
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
    except (OSError, ValueError) as exc:
        raise UserError(
            "measure_memory on CPU needs Linux's /proc/self/clear_refs to reset the peak resident set "
            f"size, which is not usable here ({exc}); turn memory measurement off (measure.memory: false)"
        ) from exc


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{_STATUS} has no {field} line")
    return int(match.group(1))


def _malloc_trim() -> None:
    """Return freed heap pages to the OS (glibc); a no-op where malloc_trim does not exist."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
