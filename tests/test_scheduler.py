"""Worker planning: how CPU workers split the cores, and what the user can override."""

from __future__ import annotations

import os

import pytest

from segbench.errors import UserError
from segbench.runner.devices import plan_workers

CORES = len(os.sched_getaffinity(0))


def test_cpu_workers_split_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    (only,) = plan_workers("cpu", None)
    assert (only.device, only.threads, only.visible_gpu) == ("cpu", CORES, None)
    with pytest.raises(UserError, match=f"{CORES} usable CPU core"):
        plan_workers("cpu", CORES + 1)


def test_omp_num_threads_sets_each_workers_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert [slot.threads for slot in plan_workers("cpu", None)] == [1]
    monkeypatch.setenv("OMP_NUM_THREADS", "two")
    with pytest.raises(UserError, match="OMP_NUM_THREADS='two'"):
        plan_workers("cpu", None)


def test_bad_device_list_is_a_user_error() -> None:
    with pytest.raises(UserError, match="expected auto, cpu, or GPU indices"):
        plan_workers("gpu0", None)


def test_a_worker_count_below_one_is_a_user_error() -> None:
    for workers in (0, -1):
        with pytest.raises(
            UserError, match=f"--workers {workers}: expected a number of workers of at least 1"
        ):
            plan_workers("cpu", workers)
