"""Timing one call, and warming up until the timings settle.

On CPU a call is timed with the monotonic ``time.perf_counter_ns``. On CUDA,
kernels run asynchronously, so a host clock would time the launches: a CUDA
event is recorded on the device's stream before and after the call, and the
host waits for the second one before reading the elapsed GPU time. Waiting
after every call makes consecutive calls not overlap, which is what latency
means.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: Runs its argument once and returns the elapsed milliseconds.
Timer = Callable[[Callable[[], object]], float]


def cpu_timer(call: Callable[[], object]) -> float:
    """Milliseconds ``call()`` took by the monotonic clock."""
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e6


class CudaEventTimer:
    """Milliseconds of GPU time between CUDA events around ``call()``, synchronised after each call."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)  # nothing queued before (e.g. the weight upload) is timed

    def __call__(self, call: Callable[[], object]) -> float:
        stream = torch.cuda.current_stream(self.device)
        self.start.record(stream)
        call()
        self.end.record(stream)
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))


def make_timer(device: torch.device) -> tuple[Timer, str]:
    """The timer for ``device`` and its name, stored with the result."""
    if device.type == "cuda":
        return CudaEventTimer(device), "cuda_event"
    return cpu_timer, "perf_counter"


@dataclass(frozen=True)
class WarmUp:
    """How the warm-up went: stored with the result, so an unsettled warm-up is visible."""

    iterations: int
    #: True when two consecutive windows agreed; False when the cap was reached first;
    #: None when no warm-up was asked for
    stable: bool | None
    samples_ms: list[float]


def warm_up(
    timed_call: Callable[[], float], minimum: int, *, tolerance: float = 0.05, max_factor: int = 4
) -> WarmUp:
    """Run ``timed_call`` at least ``minimum`` times, then until the timings settle.

    After each call (from the ``minimum``-th on) the medians of the last two
    windows of ``max(1, minimum // 2)`` calls are compared; warm-up ends when
    they differ by at most ``tolerance`` (relative), or after
    ``max_factor * minimum`` calls. Lazy initialisation, allocator growth,
    cuDNN autotuning and ``torch.compile`` all land in the first calls, which
    the windows then leave behind.
    """
    if minimum <= 0:
        return WarmUp(0, None, [])
    window = max(1, minimum // 2)
    cap = max(max_factor * minimum, 2 * window)
    samples: list[float] = []
    while len(samples) < cap:
        samples.append(timed_call())
        if len(samples) >= max(minimum, 2 * window):
            recent = statistics.median(samples[-window:])
            before = statistics.median(samples[-2 * window : -window])
            if abs(recent - before) <= tolerance * recent:
                return WarmUp(len(samples), True, samples)
    return WarmUp(len(samples), False, samples)
