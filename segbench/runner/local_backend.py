"""The local backend: one worker process per GPU, or CPU workers that split the cores.

Jobs that share a ``train_key`` (they differ only in evaluation or measurement
factors) form one task and run in order on one worker: the first trains, the
rest load its checkpoint. Workers only compute; every result comes back over a
queue to the caller, which is the single database writer.

Latency needs its device to itself. GPU workers own their GPU; CPU workers
share the processor, so the latency stage takes a machine-wide exclusive lock
that training and evaluation in other workers hold shared
(:class:`~segbench.runner.node_lock.NodeDeviceLock`: writer preference, so a
waiting measurement is not starved; on lock files, so a worker that dies
releases it, and two runs on one machine keep out of each other's timings).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segbench.jobs import PlannedJob
from segbench.lifeline import die_with_parent
from segbench.runner.backend import STOP_GRACE_SECONDS, Event, StopRequest, lost_events, worker_context
from segbench.runner.devices import WorkerSlot
from segbench.runner.pipeline import run_job


def _worker_main(slot: WorkerSlot, tasks: Any, events: Any, checkpoint_dir: str, parent_pid: int) -> None:
    # First of all: a worker whose driver is gone (kill -9, OOM killer) dies with it.
    die_with_parent(parent_pid)
    # The parent decides when to stop: a Ctrl-C in the terminal, or the hangup of a
    # closed ssh session, reaches every process of the group, and workers must not
    # die half-way through a write. The parent's SIGTERM is the stop request.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop = StopRequest()
    stop.install()
    ctx = worker_context(slot.device, slot.threads, checkpoint_dir, stop)
    job_id: int | None = None
    try:
        while not stop.is_set():
            task = tasks.get()
            if task is None:
                return
            for job_id, spec in task:
                if stop.is_set():
                    return
                events.put(Event("start", slot.index, job_id, detail=spec.label, device=slot.device))

                def report(stage: str, detail: str, job_id: int = job_id) -> None:
                    events.put(Event("stage", slot.index, job_id, stage=stage, detail=detail))

                result = run_job(spec, ctx, report)
                events.put(Event("result", slot.index, job_id, result=result))
    except KeyboardInterrupt as stopped:  # the stop request; training saved its checkpoint first
        if job_id is not None:
            events.put(Event("stage", slot.index, job_id, stage="stopped", detail=str(stopped)))


class LocalBackend:
    """A pool of spawned worker processes on this machine."""

    def __init__(self, slots: list[WorkerSlot]) -> None:
        self.slots = slots

    def run(
        self, tasks: list[list[PlannedJob]], on_event: Callable[[Event], None], checkpoint_dir: Path
    ) -> None:
        ctx = mp.get_context("spawn")
        task_q, event_q = ctx.Queue(), ctx.Queue()
        for task in tasks:
            task_q.put([(p.job_id, p.spec) for p in task])
        n = min(len(self.slots), len(tasks))
        for _ in range(n):
            task_q.put(None)
        task_of = {p.job_id: task for task in tasks for p in task}
        procs: dict[int, Any] = {}
        running: dict[int, int | None] = {}

        def start(slot: WorkerSlot) -> None:
            procs[slot.index] = self._start(ctx, slot, task_q, event_q, checkpoint_dir)
            running[slot.index] = None

        for slot in self.slots[:n]:
            start(slot)
        try:
            while procs:
                try:
                    self._dispatch(event_q.get(timeout=0.5), running, on_event)
                except queue.Empty:
                    dead = [i for i, p in procs.items() if not p.is_alive()]
                    if dead:
                        # A worker flushes its queue before it exits: drain first, so a
                        # result that is already on its way is not mistaken for a loss.
                        self._drain(event_q, running, on_event)
                        for index in dead:
                            proc = procs.pop(index)
                            job_id = running.pop(index, None)
                            if job_id is None and proc.exitcode == 0:
                                continue  # its queue ran dry: a normal end
                            if job_id is not None:
                                why = f"worker process died (exit code {proc.exitcode})"
                                lost_events(task_of[job_id], job_id, index, why, on_event)
                            # It died before taking the end-of-queue marker meant for it: a
                            # fresh worker takes that marker, and the tasks still queued before it.
                            start(self.slots[index])
        finally:
            self._stop(procs, event_q, running, on_event)

    @classmethod
    def _stop(
        cls,
        procs: dict[int, Any],
        event_q: Any,
        running: dict[int, int | None],
        on_event: Callable[[Event], None],
    ) -> None:
        """Stop the workers still running: ask (SIGTERM), let training checkpoint, then kill.

        While they save, their events are still passed on when the run is being
        interrupted (a job that finishes in the grace period is recorded done); after
        another error they are only drained, so that no worker blocks on a full queue.
        A second Ctrl-C during the wait kills them at once.
        """
        if not procs:
            return
        forward = isinstance(sys.exc_info()[1], KeyboardInterrupt)
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        try:
            while any(p.is_alive() for p in procs.values()) and time.monotonic() < deadline:
                try:
                    event = event_q.get(timeout=0.2)
                except queue.Empty:
                    continue
                if forward:
                    cls._dispatch(event, running, on_event)
        finally:
            for proc in procs.values():
                if proc.is_alive():
                    proc.kill()
            for proc in procs.values():
                proc.join(timeout=10)

    def _start(
        self,
        ctx: Any,
        slot: WorkerSlot,
        task_q: Any,
        event_q: Any,
        checkpoint_dir: Path,
    ) -> Any:
        env_before = os.environ.get("CUDA_VISIBLE_DEVICES")
        if slot.visible_gpu is not None:
            # Pinned before the child imports torch: each worker sees exactly one GPU.
            os.environ["CUDA_VISIBLE_DEVICES"] = slot.visible_gpu
        try:
            proc = ctx.Process(
                target=_worker_main,
                args=(slot, task_q, event_q, str(checkpoint_dir), os.getpid()),
                name=f"segbench-worker-{slot.index}",
                # Not daemonic: a daemonic process may not start children, and training with
                # train.num_workers > 0 starts DataLoader workers. What ends a worker whose
                # driver is gone is its lifeline (segbench/lifeline.py), not multiprocessing's atexit.
                daemon=False,
            )
            proc.start()
        finally:
            if slot.visible_gpu is not None:
                if env_before is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = env_before
        return proc

    @staticmethod
    def _dispatch(event: Event, running: dict[int, int | None], on_event: Callable[[Event], None]) -> None:
        if event.kind == "start":
            running[event.worker] = event.job_id
        elif event.kind == "result":
            running[event.worker] = None
        on_event(event)

    def _drain(self, event_q: Any, running: dict[int, int | None], on_event: Callable[[Event], None]) -> None:
        while True:
            try:
                self._dispatch(event_q.get(timeout=0.2), running, on_event)
            except queue.Empty:
                return
