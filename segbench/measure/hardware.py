"""Who measured: the hardware and software identity stored with every measurement.

A latency is only comparable with another taken on the same CPU model, core
and thread count, GPU and driver, and the same CUDA / cuDNN / torch builds.
:func:`hardware_key` hashes exactly those parts into a short stable key, so
regression tracking compares timings with timings from the same kind of
machine, and never across a driver or torch upgrade without saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

#: The identity fields that change timings; everything else is provenance.
KEY_FIELDS = (
    "device_type",
    "cpu_model",
    "cpu_cores",
    "torch_threads",
    "gpu_name",
    "driver",
    "cuda",
    "cudnn",
    "torch",
)


def hardware_identity(device: str = "cpu", *, threads: int | None = None) -> dict[str, Any]:
    """CPU model and cores, thread count, GPU name / memory / driver (for a CUDA ``device``), versions.

    ``threads`` is the intra-op thread count the measurement runs with, when
    it sets one (``measure.threads``); by default, torch's current count. GPU
    fields are None for a CPU device: a CPU timing does not depend on a GPU
    that happens to be in the machine. The CUDA and cuDNN versions are those
    of the torch build. Asking for a CUDA device that is not there is a
    :class:`~segbench.errors.UserError`.
    """
    import torch
    import torchvision

    from segbench.measure.device import resolve_device

    dev = resolve_device(device)
    identity: dict[str, Any] = {
        "device": str(dev),
        "device_type": dev.type,
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "gpu_name": None,
        "gpu_memory_bytes": None,
        "gpu_capability": None,
        "driver": None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        identity.update(
            gpu_name=props.name,
            gpu_memory_bytes=int(props.total_memory),
            gpu_capability=f"{props.major}.{props.minor}",
            driver=nvidia_driver_version(),
        )
    return identity


def hardware_key(identity: dict[str, Any]) -> str:
    """A 12-hex-digit hash of the identity fields that make timings comparable (:data:`KEY_FIELDS`)."""
    parts = {name: identity.get(name) for name in KEY_FIELDS}
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def nvidia_driver_version() -> str | None:
    """The NVIDIA kernel driver version, from ``/proc`` or ``nvidia-smi``; None when neither answers."""
    proc = Path("/proc/driver/nvidia/version")
    if proc.exists():
        for word in proc.read_text(errors="replace").split():
            if word.count(".") >= 1 and word.replace(".", "").isdigit():
                return word
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.stdout.strip().splitlines()
    return first[0].strip() if first else None
