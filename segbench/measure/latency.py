"""Latency and throughput that can be reproduced: warm-up until stable, timed iterations, full statistics.

What is recorded with every number is what makes it reproducible: the device,
the thread count, whether ``cudnn.benchmark`` was on, batch size, precision,
memory format, compilation, how many warm-up iterations ran and whether they
settled, and every raw sample. Timing stops early once at least ``min_iters``
samples have a coefficient of variation within ``cv_target``; a result still
above it after ``iters`` samples is kept and flagged ``noisy``, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from segbench.errors import UserError, did_you_mean
from segbench.measure.device import (
    cudnn_benchmark,
    on_device,
    preserved_rng,
    resolve_device,
    resolve_precision,
    torch_threads,
)
from segbench.measure.prepare import example_input, prepared_model
from segbench.measure.shapes import validate_input_shape
from segbench.measure.stats import coefficient_of_variation, summarize
from segbench.measure.timing import make_timer, warm_up
from segbench.models.outputs import model_heads


@dataclass(frozen=True)
class LatencyStats:
    """Timings of one forward pass of a batch, in milliseconds, with how they were taken."""

    median_ms: float
    mean_ms: float
    p90_ms: float
    iqr_ms: float
    #: sample standard deviation / mean
    cv: float
    min_ms: float
    max_ms: float
    samples_ms: list[float]
    noisy: bool
    cv_target: float
    warmup_iters: int
    warmup_stable: bool | None
    device: str
    threads: int
    cudnn_benchmark: bool | None
    batch_size: int
    input_shape: tuple[int, int, int, int]
    precision: str
    channels_last: bool
    #: False, or the torch.compile backend
    compile: bool | str
    #: images per second = batch_size / median
    throughput_ips: float
    timer: str
    warmup_samples_ms: list[float]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out


@dataclass
class TimedForward:
    """A model prepared for timing and one timed call of it: what measurement and timing rounds share.

    :func:`measure_latency` times a contiguous series of calls; a lockstep
    timing round (:mod:`segbench.regress.retime`) times short bursts of calls
    between other processes' bursts. Both must time the very same thing (the
    prepared copy, the input, the timer, the output read-out), so it is built
    in one place.
    """

    call: Callable[[], float]
    device: torch.device
    threads: int
    cudnn_benchmark: bool | None
    shape: tuple[int, int, int, int]
    compile: str | None
    timer: str


@contextmanager
def timed_forward(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str = "cpu",
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool | str = False,
    threads: int | None = None,
    num_classes: int | None = None,
) -> Iterator[TimedForward]:
    """``model`` ready to be timed on a batch of ``input_shape`` = (N, C, H, W) under ``torch.inference_mode()``.

    The model runs in eval mode; its modes, device and weights, the global
    RNG, the thread count and ``cudnn.benchmark`` are as before afterwards.
    ``precision`` (fp32 / fp16 / bf16) and ``channels_last`` convert weights
    and input (on a private copy of the model); ``compile`` wraps it in
    ``torch.compile`` (True: the default inductor backend, or a backend name),
    whose compilation happens during warm-up. ``threads`` sets the intra-op
    CPU thread count for the measurement. A timed call includes reading the
    model's output (:func:`~segbench.models.outputs.model_heads`): logits a
    model returns at a lower resolution are resized to the input inside the
    timing, as segbench's own models upsample inside their forward.
    ``num_classes`` (the dataset's) is checked against the output channels.
    """
    shape = validate_input_shape(input_shape)
    dev = resolve_device(device)
    dtype = resolve_precision(precision)
    backend = _compile_backend(compile)
    with (
        on_device(dev),
        torch_threads(threads) as thread_count,
        cudnn_benchmark(dev) as benchmark,
        preserved_rng(dev),
        prepared_model(model, dev, dtype=dtype, channels_last=channels_last) as net,
        torch.inference_mode(),
    ):
        net.eval()
        runner = torch.compile(net, backend=backend) if backend else net
        batch = example_input(shape, dev, dtype=dtype, channels_last=channels_last)
        timer, timer_name = make_timer(dev)

        def forward() -> tuple[torch.Tensor, ...]:
            return model_heads(runner(batch), batch.shape[-2:], num_classes, model=net)

        yield TimedForward(
            call=lambda: timer(forward),
            device=dev,
            threads=thread_count,
            cudnn_benchmark=benchmark,
            shape=shape,
            compile=backend,
            timer=timer_name,
        )


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str = "cpu",
    *,
    warmup: int = 5,
    iters: int = 50,
    min_iters: int = 10,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool | str = False,
    threads: int | None = None,
    cv_target: float = 0.10,
    num_classes: int | None = None,
) -> LatencyStats:
    """Time ``model`` (prepared as :func:`timed_forward` says): warm-up, then up to ``iters`` calls.

    Timing stops early once ``min_iters`` samples have a coefficient of
    variation within ``cv_target``.
    """
    _check_counts(warmup=warmup, iters=iters, min_iters=min_iters, cv_target=cv_target)
    prepared = timed_forward(
        model,
        input_shape,
        device,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        threads=threads,
        num_classes=num_classes,
    )
    with prepared as timed:
        warm = warm_up(timed.call, warmup)
        samples: list[float] = []
        while len(samples) < iters:
            samples.append(timed.call())
            if len(samples) >= min_iters and coefficient_of_variation(samples) <= cv_target:
                break
    stats = summarize(samples)
    shape = timed.shape
    return LatencyStats(
        median_ms=stats.median,
        mean_ms=stats.mean,
        p90_ms=stats.p90,
        iqr_ms=stats.iqr,
        cv=stats.cv,
        min_ms=stats.minimum,
        max_ms=stats.maximum,
        samples_ms=samples,
        noisy=stats.cv > cv_target,
        cv_target=cv_target,
        warmup_iters=warm.iterations,
        warmup_stable=warm.stable,
        device=str(timed.device),
        threads=timed.threads,
        cudnn_benchmark=timed.cudnn_benchmark,
        batch_size=shape[0],
        input_shape=shape,
        precision=precision,
        channels_last=channels_last,
        compile=timed.compile or False,
        throughput_ips=shape[0] * 1000.0 / stats.median if stats.median > 0 else float("inf"),
        timer=timed.timer,
        warmup_samples_ms=warm.samples_ms,
    )


def _check_counts(*, warmup: int, iters: int, min_iters: int, cv_target: float) -> None:
    for name, value, low in (("warmup", warmup, 0), ("iters", iters, 1), ("min_iters", min_iters, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"measure_latency: {name} must be an integer ≥ {low}, got {value!r}")
    if min_iters > iters:
        raise UserError(f"measure_latency: min_iters={min_iters} is larger than iters={iters}")
    if not cv_target > 0:
        raise UserError(f"measure_latency: cv_target must be positive, got {cv_target!r}")


def _compile_backend(compile: bool | str) -> str | None:
    """None for no compilation, else the torch.compile backend name (True → inductor)."""
    if compile is False:
        return None
    if compile is True:
        return "inductor"
    if not isinstance(compile, str):
        raise UserError(f"compile: expected true/false or a torch.compile backend name, got {compile!r}")
    backends = torch.compiler.list_backends(exclude_tags=())
    if compile not in backends:
        raise UserError(
            f"compile: '{compile}' is not a torch.compile backend here ({', '.join(backends)})"
            f"{did_you_mean(compile, backends)}"
        )
    return compile
