"""The Ray backend: the same tasks as the local pool, placed by Ray on a cluster's nodes.

For users who outgrow one machine. Each task (the jobs that share one trained
checkpoint) becomes one Ray task: it asks for one GPU when the cluster has GPUs
(the GPU is then its own, as with the local pool), else for ``threads`` CPUs.
The task is a generator, so its events (job started, stage reached, result)
stream back to this process as they happen, and this process stays the single
database writer: workers never see the database, whatever the cluster.

Latency needs its device to itself. A GPU task owns its GPU. CPU tasks that
Ray puts on one node meet on that node's :class:`NodeDeviceLock`: latency takes
it exclusively, training and evaluation share it.

Without ``address`` a local Ray instance is started for the run (and stopped
after); with one (``auto``, ``ray://head:10001``) the run joins that cluster,
whose nodes must have segbench and the suite's model code installed. Tasks are
not retried: a task whose worker dies reports its job as lost, and
``segbench run --rerun failed`` runs it again.

Stopping: an interrupted run cancels its tasks gently first (``ray.cancel``
raises KeyboardInterrupt in the task, whose training saves its checkpoint), waits
up to :data:`~segbench.runner.backend.STOP_GRACE_SECONDS`, then force-cancels
what is left. A driver killed outright takes its local Ray instance with it: Ray
ties the processes ``ray.init`` starts to the driver's life (``PR_SET_PDEATHSIG``
on Linux, a reaper process elsewhere), and the raylet's workers die with the
raylet (tested in ``tests/test_faults.py``). Tasks on a cluster the run only
joined are owned by the driver, and Ray fails a dead owner's tasks and frees
their workers (its ownership model; not tested here).
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from segbench.errors import UserError
from segbench.jobs import JobResult, PlannedJob
from segbench.runner.backend import (
    STOP_GRACE_SECONDS,
    STOP_SIGNALS,
    Event,
    StopRequest,
    lost_events,
    worker_context,
)
from segbench.runner.devices import check_workers, threads_override, usable_cores
from segbench.runner.pipeline import run_job


@dataclass(frozen=True)
class RaySlot:
    """What one Ray task asks for and runs with."""

    gpu: bool
    threads: int


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'segbench[ray]' (or pip install ray)") from None
    return ray


def _run_task(
    task: list[tuple[int, Any]], slot: RaySlot, checkpoint_dir: str, sys_path: list[str]
) -> Iterator[Event]:
    """Runs on a Ray worker: the jobs of one task in order, yielding their events as they happen.

    ``ray.cancel`` (an interrupted run) raises KeyboardInterrupt here: the job's
    training is told to save its checkpoint and stop, and the task ends when it has.
    """
    # The driver's import path, as a spawned local worker gets it, so that import-path
    # models (``mymodels:tiny``) resolve the same way on a worker of this machine.
    sys.path[:0] = [p for p in sys_path if p not in sys.path and os.path.isdir(p)]
    device = "cuda" if slot.gpu else "cpu"
    stop = StopRequest()
    ctx = worker_context(device, slot.threads, checkpoint_dir, stop)
    where = f"{device}@{socket.gethostname()}"
    # run_job reports its stages through a callback; running it in a thread lets them
    # stream out of this generator while the job runs, instead of all at its end.
    events: queue.SimpleQueue[Event] = queue.SimpleQueue()
    for job_id, spec in task:
        yield Event("start", 0, job_id, detail=spec.label, device=where)
        thread = threading.Thread(
            target=_run_one,
            args=(spec, job_id, ctx, where, events),
            name=f"segbench-job-{job_id}",
            daemon=True,  # Ray stopping this worker (sys.exit on SIGTERM) must not wait for the job
        )
        thread.start()
        finished = False
        try:
            while (event := _next_event(events)).kind != "result":
                yield event
            finished = True
        finally:
            if not finished:  # cancelled: KeyboardInterrupt here, or the generator closed at a yield
                _abandon(thread, stop)
        thread.join()
        yield event


def _abandon(thread: threading.Thread, stop: StopRequest) -> None:
    """End the job of a cancelled task: training saves its checkpoint first, anything else ends now.

    Waiting for training is bounded by the driver, which force-cancels (kills this
    worker) after its grace period. A stage with nothing to save (latency,
    evaluation) cannot be stopped from another thread, and left alone it would go
    on in a worker Ray reuses: the worker process ends, as a forced cancel would end it.
    """
    stop.set()
    thread.join(timeout=None if stop.deferring else 1.0)  # (a moment for a job that is just ending)
    if thread.is_alive():
        os._exit(1)


def _next_event(events: queue.SimpleQueue[Event]) -> Event:
    """The job's next event, waking up regularly so that a cancellation is taken at once."""
    while True:
        try:
            return events.get(timeout=0.5)
        except queue.Empty:
            continue


def _run_one(spec: Any, job_id: int, ctx: Any, where: str, events: queue.SimpleQueue[Event]) -> None:
    def report(stage: str, detail: str) -> None:
        events.put(Event("stage", 0, job_id, stage=stage, detail=detail))

    try:
        result = run_job(spec, ctx, report)
    except KeyboardInterrupt:  # stopped for a cancelled task, its checkpoint saved: no result
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


def _signal_handlers() -> dict[signal.Signals, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set them, and only there are they delivered
    return {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}


class RayBackend:
    """Tasks as Ray tasks; their events come back here, to the single database writer."""

    def __init__(self, address: str | None, devices: str, workers: int | None) -> None:
        if devices not in ("auto", "cpu"):
            raise UserError(
                f"--devices {devices}: with --backend ray, Ray places the jobs; use auto (GPUs when the "
                "cluster has them) or cpu"
            )
        check_workers(workers)
        self.ray = _import_ray()
        self.address = address
        self.devices = devices
        self.workers = workers
        self._owned = False  # this process connected (or started a local Ray): it disconnects
        if address is not None and not self.ray.is_initialized():
            self._connect()  # a wrong address is refused before the run is recorded

    def _connect(self) -> None:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address is None:
            options["num_cpus"] = usable_cores()  # a local instance for this run
        # ray.init installs signal handlers of its own (SIGTERM → sys.exit); the run's
        # handlers, which stop it cleanly and record it interrupted, must stay in charge.
        handlers = _signal_handlers()
        try:
            self.ray.init(address=self.address, **options)
        except ConnectionError as exc:
            raise UserError(f"--ray-address {self.address}: {exc}") from None
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        self._owned = True

    def placement(self) -> RaySlot:
        """One GPU per job when the cluster has GPUs (with its node's share of CPUs), else CPUs."""
        nodes = [n["Resources"] for n in self.ray.nodes() if n.get("Alive")]
        gpu_nodes = [r for r in nodes if r.get("GPU", 0) >= 1]
        if self.devices == "auto" and gpu_nodes:
            if self.workers is not None:
                raise UserError(f"--workers {self.workers}: with GPUs segbench runs one job per GPU")
            share = min(int(r.get("CPU", 0) // r["GPU"]) for r in gpu_nodes)
            return RaySlot(gpu=True, threads=threads_override() or max(1, share))
        node_cpus = [int(r.get("CPU", 0)) for r in nodes if r.get("CPU", 0) >= 1]
        if not node_cpus:
            raise UserError("the Ray cluster has no node with a CPU to run jobs on")
        smallest = min(node_cpus)
        workers = self.workers or 1
        if workers > smallest:
            raise UserError(
                f"--workers {workers}: the smallest Ray node has {smallest} CPU(s); each job needs at least one"
            )
        return RaySlot(gpu=False, threads=threads_override() or smallest // workers)

    def run(
        self, tasks: list[list[PlannedJob]], on_event: Callable[[Event], None], checkpoint_dir: Path
    ) -> None:
        ray = self.ray
        if not ray.is_initialized():
            self._connect()
        # Workers need not share this process's working directory: send absolute paths.
        checkpoints = str(checkpoint_dir.resolve())
        import_path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
        generators: dict[Any, int] = {}
        try:
            slot = self.placement()
            remote = ray.remote(_run_task).options(
                num_cpus=slot.threads, num_gpus=1 if slot.gpu else 0, max_retries=0
            )
            for index, task in enumerate(tasks):
                payload = [(p.job_id, p.spec) for p in task]
                generators[remote.remote(payload, slot, checkpoints, import_path)] = index
            self._follow(generators, tasks, on_event)
        finally:
            interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
            try:
                if generators and interrupted:
                    # As the local pool: a running training saves its checkpoint, within the grace
                    # period (another Ctrl-C cuts it short); the force below ends what is left.
                    for gen in generators:
                        ray.cancel(gen, force=False)
                    ray.wait(
                        [gen.completed() for gen in generators],
                        num_returns=len(generators),
                        timeout=STOP_GRACE_SECONDS,
                    )
            finally:
                for gen in generators:
                    ray.cancel(gen, force=True)
                if self._owned:
                    ray.shutdown()
                    self._owned = False

    def _follow(
        self, generators: dict[Any, int], tasks: list[list[PlannedJob]], on_event: Callable[[Event], None]
    ) -> None:
        """Pass every task's events on, with a progress line per running task, until all end."""
        ray = self.ray
        finished: dict[int, int] = {}  # task index -> how many of its jobs have a result
        lines: dict[int, int] = {}  # task index -> progress line
        while generators:
            ready, _ = ray.wait(list(generators), num_returns=1, timeout=0.5)
            for gen in ready:
                index = generators[gen]
                try:
                    event = ray.get(next(gen))
                except StopIteration:
                    del generators[gen]
                    lines.pop(index, None)
                    continue
                except (ray.exceptions.RayError, OSError) as exc:
                    # the task's worker died (killed, out of memory, node lost): the job it was on
                    # is lost, and so are the jobs after it, which needed its checkpoint
                    del generators[gen]
                    task, done = tasks[index], finished.get(index, 0)
                    if done < len(task):
                        first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
                        why = f"Ray task failed: {first}"
                        lost_events(task, task[done].job_id, lines.pop(index, 0), why, on_event)
                    continue
                if index not in lines:
                    lines[index] = min(set(range(len(lines) + 1)) - set(lines.values()))
                if event.kind == "result":
                    finished[index] = finished.get(index, 0) + 1
                on_event(replace(event, worker=lines[index]))
