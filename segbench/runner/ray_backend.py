"""The Ray backend: the same tasks as the local pool, placed by Ray on a cluster's nodes.

For users who outgrow one machine (``docs/cluster.md``). Each task (the jobs
that share one trained checkpoint) becomes one Ray task: it asks for one GPU
when the cluster has GPUs (the GPU is then its own, as with the local pool),
else for ``threads`` CPUs. The task is a generator, so its events (job started,
stage reached, result) stream back to this process as they happen, and this
process stays the single database writer: workers never see the database,
whatever the cluster.

Latency needs its device to itself. A GPU task owns its GPU. CPU tasks that
Ray puts on one node meet on that node's :class:`NodeDeviceLock`: latency takes
it exclusively, training and evaluation share it.

Without ``address`` a local Ray instance is started for the run (and stopped
after); with one (``auto``, ``ray://head:10001``) the run joins that cluster,
whose nodes must have segbench and the suite's model code installed, and
``--workdir`` on a path every node shares.

Lost tasks are retried here, not by Ray: a task whose worker or node dies
(Ray raises on its generator) is sent again (:class:`RetryPolicy`: attempts,
doubling wait) with the jobs of its group that have no result yet, and Ray
places it on a node that is alive. The retried training resumes from the
group's last checkpoint on the shared workdir (every ``CHECKPOINT_SECONDS`` of training, and
every ``train.checkpoint_every`` iterations).
Sending it ourselves, not with Ray's ``max_retries``, keeps the attempt number
in every event, the jobs already finished out of the retry, and a task whose
own code raised (a deterministic error) out of it; a job whose model raises
is never lost in the first place: its failure is its result. Events carry
their attempt, and a result arrives once per job (the writer also drops a
second one). Only when the attempts are spent is the job recorded lost.

Stopping: an interrupted run writes a stop file beside the checkpoints; each
task looks for it every half second, and a training saves its checkpoint at
the step it reached and ends its task, while a stage with nothing to save ends
its worker. The run passes their events on (a job that finishes meanwhile is
recorded) for up to :data:`~segbench.runner.backend.STOP_GRACE_SECONDS`, then
force-cancels what is left. (A gentle ``ray.cancel`` raised KeyboardInterrupt
anywhere in the task, and once mid-step crashed Ray's core worker.) A driver
killed outright takes its local Ray instance with it: Ray ties the processes
``ray.init`` starts to the driver's life (``PR_SET_PDEATHSIG`` on Linux, a
reaper process elsewhere), and the raylet's workers die with the raylet
(tested in ``tests/test_faults.py``). Tasks on a cluster the run only joined
are owned by the driver, and Ray fails a dead owner's tasks and frees their
workers (its ownership model; not tested here).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from segbench.errors import UserError
from segbench.jobs import PlannedJob
from segbench.runner.backend import (
    STOP_GRACE_SECONDS,
    STOP_SIGNALS,
    Event,
    RetryPolicy,
    lost_events,
)
from segbench.runner.devices import check_workers, threads_override, usable_cores
from segbench.runner.ray_task import RaySlot, run_task


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'segbench[ray]' (or pip install ray)") from None
    return ray


def _signal_handlers() -> dict[signal.Signals, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set them, and only there are they delivered
    return {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}


@dataclass(frozen=True)
class _Attempt:
    """One Ray task: which of the round's tasks it runs, and which attempt at it it is (1 = the first)."""

    index: int
    number: int


class _Round:
    """A round's tasks as Ray streams them: each generator's attempt, what has its result, what waits to retry."""

    def __init__(
        self,
        ray: Any,
        tasks: list[list[PlannedJob]],
        send: Callable[[list[PlannedJob], int], Any],
        retry: RetryPolicy,
        on_event: Callable[[Event], None],
    ) -> None:
        self.ray = ray
        self.tasks = tasks
        self.send = send
        self.retry = retry
        self.on_event = on_event
        self.generators: dict[Any, _Attempt] = {}
        #: task index -> the ids of its jobs whose result has been passed on
        self.finished: dict[int, set[int]] = {i: set() for i in range(len(tasks))}
        #: (when, task index, attempt) of the retries waiting for their time
        self.due: list[tuple[float, int, int]] = []
        self.lines: dict[int, int] = {}  # task index -> progress line

    def start(self) -> None:
        for index in range(len(self.tasks)):
            self._send(index, 1)

    def _send(self, index: int, number: int) -> None:
        self.generators[self.send(self.rest(index), number)] = _Attempt(index, number)

    def rest(self, index: int) -> list[PlannedJob]:
        """The jobs of task ``index`` without a result yet: what a retry runs."""
        return [p for p in self.tasks[index] if p.job_id not in self.finished[index]]

    def follow(self, until: float | None = None) -> None:
        """Pass every task's events on until all have ended; ``until`` (stopping): no retries, a deadline."""
        ray = self.ray
        stopping = until is not None
        while self.generators or (self.due and not stopping):
            if stopping and time.monotonic() >= until:  # type: ignore[operator]
                return
            if not stopping:
                self._send_due()
            if not self.generators:
                time.sleep(min(0.5, max(0.0, min(when for when, _, _ in self.due) - time.monotonic())))
                continue
            ready, _ = ray.wait(list(self.generators), num_returns=1, timeout=0.5)
            for gen in ready:
                self._next(gen, stopping)

    def _send_due(self) -> None:
        at = time.monotonic()
        for item in [d for d in self.due if d[0] <= at]:
            self.due.remove(item)
            self._send(item[1], item[2])

    def _next(self, gen: Any, stopping: bool) -> None:
        ray = self.ray
        attempt = self.generators[gen]
        try:
            event = ray.get(next(gen))
        except StopIteration:
            del self.generators[gen]
            self.lines.pop(attempt.index, None)
            return
        except (ray.exceptions.RayError, OSError) as exc:
            # the task's worker died (killed, out of memory, its node lost), or the task itself raised
            del self.generators[gen]
            if not stopping:
                self._lost(attempt, exc)
            return
        line = self._line(attempt.index)
        if event.kind == "result":
            if event.job_id in self.finished[attempt.index]:
                return  # a result passed on already: one per job
            self.finished[attempt.index].add(event.job_id)
        self.on_event(replace(event, worker=line))

    def _line(self, index: int) -> int:
        if index not in self.lines:
            self.lines[index] = min(set(range(len(self.lines) + 1)) - set(self.lines.values()))
        return self.lines[index]

    def _lost(self, attempt: _Attempt, exc: BaseException) -> None:
        """Retry the task's jobs without a result, or, attempts spent, record them lost."""
        rest = self.rest(attempt.index)
        if not rest:
            self.lines.pop(attempt.index, None)
            return
        errors = self.ray.exceptions
        first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        # the task's own code raised (say, segbench missing on the node): the same again on a retry
        retryable = not isinstance(exc, errors.RayTaskError | errors.TaskCancelledError)
        if retryable and attempt.number <= self.retry.retries:
            number = attempt.number + 1
            wait = self.retry.wait_before(number)
            self.due.append((time.monotonic() + wait, attempt.index, number))
            self.on_event(
                Event(
                    "retry",
                    self._line(attempt.index),
                    rest[0].job_id,
                    detail=f"Ray task lost ({type(exc).__name__}: {first}); attempt {number} of {self.retry.retries + 1} in {wait:g}s",
                    attempt=number,
                )
            )
            return
        tries = f" ({attempt.number} attempts)" if attempt.number > 1 else ""
        why = f"Ray task failed{tries}: {first}"
        line = self.lines.pop(attempt.index, 0)
        lost_events(self.tasks[attempt.index], rest[0].job_id, line, why, self.on_event, attempt.number)


class RayBackend:
    """Tasks as Ray tasks; their events come back here, to the single database writer."""

    def __init__(
        self, address: str | None, devices: str, workers: int | None, retry: RetryPolicy | None = None
    ) -> None:
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
        self.retry = retry or RetryPolicy()
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
        checkpoints = checkpoint_dir.resolve()
        stop_file = checkpoints / f".stop-{uuid.uuid4().hex}"
        import_path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
        round_ = None
        try:
            slot = self.placement()
            remote = ray.remote(run_task).options(
                num_cpus=slot.threads, num_gpus=1 if slot.gpu else 0, max_retries=0
            )

            def send(jobs: list[PlannedJob], attempt: int) -> Any:
                payload = [(p.job_id, p.spec) for p in jobs]
                return remote.remote(payload, slot, str(checkpoints), str(stop_file), attempt, import_path)

            round_ = _Round(ray, tasks, send, self.retry, on_event)
            round_.start()
            round_.follow()
        finally:
            interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
            try:
                trains = any("train" in p.spec.stages for task in tasks for p in task)
                if (
                    round_ is not None
                    and round_.generators
                    and interrupted
                    and trains
                    and _ask_to_stop(stop_file)
                ):
                    # As the local pool: a running training saves its checkpoint and a job that ends
                    # meanwhile is recorded, within the grace period (another Ctrl-C cuts it short).
                    round_.follow(until=time.monotonic() + STOP_GRACE_SECONDS)
            finally:
                for gen in round_.generators if round_ is not None else ():
                    ray.cancel(gen, force=True)
                stop_file.unlink(missing_ok=True)
                if self._owned:
                    ray.shutdown()
                    self._owned = False


def _ask_to_stop(stop_file: Path) -> bool:
    """Write the stop file the tasks look for; False where it cannot be written: then they are cancelled."""
    try:
        stop_file.parent.mkdir(parents=True, exist_ok=True)
        stop_file.touch()
    except OSError:
        return False
    return True
