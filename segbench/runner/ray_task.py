"""What runs on a Ray worker: one task's jobs in order, their events streamed back to the driver.

The driver side is :mod:`~segbench.runner.ray_backend`. A task never sees the
database; it yields :class:`~segbench.runner.backend.Event` s, each stamped
with the attempt it belongs to, and ends early when the driver's stop file
appears on the shared workdir.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from segbench.jobs import JobResult
from segbench.runner.backend import Event, StopRequest, worker_context
from segbench.runner.pipeline import run_job

#: how often a task looks for the driver's stop file
STOP_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RaySlot:
    """What one Ray task asks for and runs with."""

    gpu: bool
    threads: int


def run_task(
    task: list[tuple[int, Any]],
    slot: RaySlot,
    checkpoint_dir: str,
    stop_file: str,
    attempt: int,
    sys_path: list[str],
) -> Iterator[Event]:
    """Runs on a Ray worker: the jobs of one task in order, yielding their events as they happen.

    When ``stop_file`` appears the run is stopping: the job's training saves its
    checkpoint and the task ends (see :func:`_stop`).
    """
    # The driver's import path, as a spawned local worker gets it, so that import-path
    # models (``mymodels:tiny``) resolve the same way on a worker of this machine.
    sys.path[:0] = [p for p in sys_path if p not in sys.path and os.path.isdir(p)]
    device = "cuda" if slot.gpu else "cpu"
    stop = StopRequest()
    ctx = worker_context(device, slot.threads, checkpoint_dir, stop)
    where = f"{device}@{_node_name()}"
    # run_job reports its stages through a callback; running it in a thread lets them
    # stream out of this generator while the job runs, instead of all at its end.
    events: queue.SimpleQueue[Event] = queue.SimpleQueue()
    watch = _StopWatch(stop_file, stop)
    for job_id, spec in task:
        if watch.requested():
            return
        yield Event("start", 0, job_id, detail=spec.label, device=where, attempt=attempt)
        thread = threading.Thread(
            target=_run_one,
            args=(spec, job_id, ctx, where, events),
            name=f"segbench-job-{job_id}",
            daemon=True,  # Ray stopping this worker (sys.exit on SIGTERM) must not wait for the job
        )
        thread.start()
        while (event := _next_event(events, thread, watch)).kind != "result":
            if event.stage == "stopped":
                break
            yield replace(event, attempt=attempt)
        thread.join()
        yield replace(event, attempt=attempt)
        if event.kind != "result":
            return


def _node_name() -> str:
    """This node as the cluster knows it: the name given to ``ray start --node-name``, else the host name."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            name = node.get("NodeName")
            if name and name != node.get("NodeManagerAddress"):  # Ray's default name is the node's IP
                return str(name)
    return socket.gethostname()


class _StopWatch:
    """Looks for the driver's stop file at most every :data:`STOP_POLL_SECONDS` (a shared disk is slow)."""

    def __init__(self, stop_file: str, stop: StopRequest) -> None:
        self.stop_file = stop_file
        self.stop = stop
        self._next = 0.0

    def requested(self) -> bool:
        if not self.stop.is_set() and time.monotonic() >= self._next:
            self._next = time.monotonic() + STOP_POLL_SECONDS
            if os.path.exists(self.stop_file):
                self.stop.set()
        return self.stop.is_set()


def _next_event(events: queue.SimpleQueue[Event], thread: threading.Thread, watch: _StopWatch) -> Event:
    """The job's next event; between events (a training streams many), whether the run is stopping."""
    stopping = watch.stop.is_set()
    while True:
        if not stopping and watch.requested():
            stopping = True
            _stop(thread, watch.stop)
        try:
            return events.get(timeout=STOP_POLL_SECONDS)
        except queue.Empty:
            continue


def _stop(thread: threading.Thread, stop: StopRequest) -> None:
    """The run is stopping (``stop`` is set): training saves its checkpoint and ends; anything else ends now.

    Waiting for training is bounded by the driver, which force-cancels (kills this
    worker) after its grace period. A stage with nothing to save (latency,
    evaluation) cannot be stopped from another thread, and left alone it would go
    on in a worker Ray reuses: the worker process ends, as a forced cancel would end it.
    """
    if stop.deferring:
        return  # the training loop reads the request after its step, saves, and says "stopped"
    thread.join(timeout=1.0)  # (a moment for a job that is just ending)
    if thread.is_alive():
        os._exit(1)


def _run_one(spec: Any, job_id: int, ctx: Any, where: str, events: queue.SimpleQueue[Event]) -> None:
    def report(stage: str, detail: str) -> None:
        events.put(Event("stage", 0, job_id, stage=stage, detail=detail))

    try:
        result = run_job(spec, ctx, report)
    except KeyboardInterrupt as stopped:  # the run is stopping, the training's checkpoint saved: no result
        events.put(Event("stage", 0, job_id, stage="stopped", detail=str(stopped)))
        return
    except BaseException as exc:  # run_job records a job's own failures; this is the worker's
        result = JobResult(
            job_key=spec.job_key,
            ok=False,
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
            failed_stage="worker",
        )
    result.device = where
    events.put(Event("result", 0, job_id, result=result))  # always: the generator waits for it
