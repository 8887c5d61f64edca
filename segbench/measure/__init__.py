"""Measurement: parameters, FLOPs, latency, throughput, peak memory, and who measured.

Every number says how it was taken: FLOPs state their input shape, whether the
aux head is in and which operators fvcore could not count; timings keep their
raw samples, warm-up, thread count, precision and device; memory says what its
peak is relative to. :func:`hardware_identity` and :func:`hardware_key` tie a
result to the machine it came from.

Importing this package is torch-free: each function is loaded (with torch and
fvcore) on first use, so ``segbench --help``, ``list`` and ``report`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segbench.measure.flops import FlopCount, count_flops, count_inference_flops
    from segbench.measure.hardware import hardware_identity, hardware_key
    from segbench.measure.latency import LatencyStats, measure_latency
    from segbench.measure.memory import MemoryStats, measure_memory
    from segbench.measure.params import ParamCount, count_params

_EXPORTS = {
    "ParamCount": "params",
    "count_params": "params",
    "FlopCount": "flops",
    "count_flops": "flops",
    "count_inference_flops": "flops",
    "LatencyStats": "latency",
    "measure_latency": "latency",
    "MemoryStats": "memory",
    "measure_memory": "memory",
    "hardware_identity": "hardware",
    "hardware_key": "hardware",
}

__all__ = [
    "FlopCount",
    "LatencyStats",
    "MemoryStats",
    "ParamCount",
    "count_flops",
    "count_inference_flops",
    "count_params",
    "hardware_identity",
    "hardware_key",
    "measure_latency",
    "measure_memory",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segbench.measure' has no attribute '{name}'")
    return getattr(importlib.import_module(f"segbench.measure.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
