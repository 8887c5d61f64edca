"""Device planning: which workers a run gets, on which devices, with how many threads.

``--devices auto|cpu|0,1`` and ``--workers N`` become worker slots for the local
pool (:func:`plan_workers`); the Ray backend checks ``--workers`` the same way
(:func:`check_workers`) and shares the thread rules (:func:`usable_cores`,
:func:`threads_override`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from segbench.errors import UserError


@dataclass(frozen=True)
class WorkerSlot:
    index: int
    device: str  # "cpu" or "cuda" (inside the worker, the one visible GPU)
    visible_gpu: str | None
    threads: int


def check_workers(workers: int | None) -> None:
    """``--workers N`` is a count of workers, at least one; not given means one per GPU, else one."""
    if workers is not None and workers < 1:
        raise UserError(
            f"--workers {workers}: expected a number of workers of at least 1 "
            "(leave it out for one per GPU, or one CPU worker)"
        )


def plan_workers(devices: str, workers: int | None) -> list[WorkerSlot]:
    """Turn ``--devices auto|cpu|0,1`` and ``--workers`` into worker slots.

    Each worker gets the usable cores divided by the number of workers as its
    torch threads, or ``$OMP_NUM_THREADS`` when the user set it (they may share
    the machine with others, or want one thread per job for stable timings).
    """
    check_workers(workers)
    gpus = _visible_gpus() if devices == "auto" else [] if devices == "cpu" else _parse_gpus(devices)
    cores = usable_cores()
    if gpus:
        if workers is not None and workers != len(gpus):
            raise UserError(f"--workers {workers}: with GPUs segbench runs one worker per GPU ({len(gpus)})")
        threads = threads_override() or max(1, cores // len(gpus))
        return [WorkerSlot(i, "cuda", g, threads=threads) for i, g in enumerate(gpus)]
    n = workers or 1
    if n > cores:
        raise UserError(
            f"--workers {n}: this machine has {cores} usable CPU core(s); each worker needs at least one"
        )
    threads = threads_override() or cores // n
    return [WorkerSlot(i, "cpu", None, threads=threads) for i in range(n)]


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity / cpusets), not every core of the machine."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_override() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"OMP_NUM_THREADS='{value}': expected a positive whole number of threads")
    return int(value)


def _parse_gpus(devices: str) -> list[str]:
    ids = [d.strip() for d in devices.split(",") if d.strip()]
    if not ids or not all(d.isdigit() for d in ids):
        raise UserError(f"--devices '{devices}': expected auto, cpu, or GPU indices like 0,1")
    available = _visible_gpus()
    missing = [d for d in ids if d not in available]
    if missing:
        raise UserError(
            f"--devices {devices}: GPU(s) {', '.join(missing)} not present (visible: {available or 'none'})"
        )
    return ids


def _visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        return [d.strip() for d in env.split(",") if d.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]
