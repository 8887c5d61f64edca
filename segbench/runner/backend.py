"""The seam between a run and where its jobs execute: what every backend shares.

A backend takes tasks (the jobs that share one trained checkpoint, in order),
runs them somewhere — worker processes on this machine
(:mod:`~segbench.runner.local_backend`) or a Ray cluster
(:mod:`~segbench.runner.ray_backend`) — and passes their :class:`Event` s to a
listener in the driver process, which is the single database writer. Here
live the protocol and its events, what a worker runs its jobs with
(:class:`JobContext`, :func:`worker_context`), and how a run is stopped: the
driver's stop signals (:func:`stop_signals`) and the worker's
:class:`StopRequest`.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from segbench.errors import UserError
from segbench.jobs import JobResult, PlannedJob
from segbench.runner.node_lock import NodeDeviceLock

#: how long an interrupted run waits for its workers to save their checkpoints before killing them
STOP_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class Event:
    """What the writer hears: ``start``, ``stage`` (progress), ``result``, ``lost``, ``retry``.

    ``retry`` (Ray) says a task was lost with its worker or node and is sent
    again, from its first job without a result, resuming the group's checkpoint.
    """

    kind: str
    worker: int
    job_id: int | None = None
    stage: str = ""
    detail: str = ""
    result: JobResult | None = None
    #: where the job runs (``start`` events): ``cpu``, ``cuda``, or ``cpu@node`` on a cluster
    device: str = ""
    #: which attempt at the job sent it (1 = the first): a retried job's later events supersede
    #: the lost attempt's, and the writer records one result per job whatever arrives twice
    attempt: int = 1


@dataclass(frozen=True)
class RetryPolicy:
    """How often a task lost with its worker or node is sent again, and how long to wait first.

    The wait doubles with each attempt (``delay``, ``2 × delay``, … at most
    :data:`RETRY_MAX_DELAY`): a node that was preempted is replaced by the
    cluster's autoscaler in seconds to minutes, and a crash loop must not spin.
    A job whose model raises is never retried: its failure is its result.
    """

    retries: int = 2
    delay: float = 2.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise UserError(f"--retries {self.retries}: expected 0 (no retry) or more")
        if not self.delay >= 0:
            raise UserError(f"--retry-delay {self.delay}: expected a number of seconds, 0 or more")

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = the first retry)."""
        return min(self.delay * 2 ** max(0, attempt - 2), RETRY_MAX_DELAY)


#: the longest wait between two attempts at a task
RETRY_MAX_DELAY = 60.0


class Backend(Protocol):
    """The seam between planning/recording and execution: a local pool, or a Ray cluster."""

    def run(
        self, tasks: list[list[PlannedJob]], on_event: Callable[[Event], None], checkpoint_dir: Path
    ) -> None:
        """Run every task (its jobs in order), passing their events to ``on_event`` in this process."""


def group_by_training(planned: list[PlannedJob]) -> list[list[PlannedJob]]:
    """Tasks in suite order; each holds the jobs that share one trained checkpoint."""
    groups: dict[str, list[PlannedJob]] = {}
    for job in planned:
        groups.setdefault(job.spec.train_key, []).append(job)
    return list(groups.values())


def lost_events(
    task: list[PlannedJob],
    job_id: int,
    worker: int,
    why: str,
    on_event: Callable[[Event], None],
    attempt: int = 1,
) -> None:
    """Report ``job_id`` lost with ``why``, and the jobs after it in its task as not run.

    The later jobs would have loaded the checkpoint the lost one was making;
    they are recorded failed (so the run says what is missing, and
    ``--rerun failed`` runs the whole group again), never left pending.
    """
    position = [p.job_id for p in task].index(job_id)
    on_event(Event("lost", worker, job_id, detail=why, attempt=attempt))
    lost_label = task[position].spec.label
    for later in task[position + 1 :]:
        on_event(
            Event(
                "lost",
                worker,
                later.job_id,
                detail=f"not run: it shares its training with {lost_label}, which was lost ({why})",
                attempt=attempt,
            )
        )


class WorkerStopped(KeyboardInterrupt):
    """The driver asked this worker to stop while it was doing something without a checkpoint."""


class StopRequest:
    """The driver's "stop now" to a worker: training saves its checkpoint and ends, anything else ends at once.

    The local pool sends it as SIGTERM (:meth:`install`); a Ray task sets it
    (:meth:`set`) when the driver's stop file appears on the shared workdir. Inside :meth:`deferred`
    (training) the request only raises a flag, which the training loop reads
    after every step; elsewhere (latency, evaluation, waiting for a task) the
    signal handler raises :class:`WorkerStopped` at once: there is nothing to save.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._deferred = 0

    def install(self) -> None:
        """Take SIGTERM as the request (main thread only, where Python runs signal handlers)."""
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.set()
        if not self._deferred:
            raise WorkerStopped(signal.Signals(signum).name)

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def deferring(self) -> bool:
        """Inside :meth:`deferred`: the request is taken at the next training step."""
        return self._deferred > 0

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A section that ends itself cleanly when :meth:`is_set`; raises on leaving if it did not."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
        if self.is_set():
            raise WorkerStopped("stop requested")


#: Wall time between training checkpoints that no setting asked for: short against a long
#: training, and long against a save (a few hundred MB at most, written in seconds).
CHECKPOINT_SECONDS = 300.0


@dataclass(frozen=True)
class JobContext:
    """What a job runs with in its worker: the device, where checkpoints go, the locks, the stop request."""

    device: str
    checkpoint_dir: Path
    #: held around the latency stage so it never shares its device with other work
    exclusive: Callable[[], Any] = nullcontext
    #: held around training/evaluation: shared with other workers, excluded by latency; what it
    #: yields (if not None) has ``pause()``, which training calls to let a waiting measurement in
    shared: Callable[[], Any] = nullcontext
    #: set when the run is interrupted: training checkpoints where it is and stops
    stop: StopRequest = field(default_factory=StopRequest)
    #: training also checkpoints after this much wall time since its last save, so a worker
    #: or node lost without warning costs at most this much training (a retry resumes there)
    checkpoint_seconds: float = CHECKPOINT_SECONDS


def worker_context(
    device: str, threads: int, checkpoint_dir: str, stop: StopRequest | None = None
) -> JobContext:
    """What a worker process runs jobs with, for either backend.

    Its torch threads, and on CPU this machine's device lock (latency
    exclusive, training and evaluation shared); a GPU worker owns its GPU.
    ``stop`` is how the backend tells the worker's jobs that the run is stopping.
    """
    import torch

    torch.set_num_threads(threads)
    lock = NodeDeviceLock("cpu") if device == "cpu" else None
    return JobContext(
        device=device,
        checkpoint_dir=Path(checkpoint_dir),
        exclusive=lock.exclusive if lock else nullcontext,
        shared=lock.shared if lock else nullcontext,
        stop=stop or StopRequest(),
    )


#: what stops a run cleanly: Ctrl-C, batch schedulers' SIGTERM, and a closed terminal or ssh session
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT (Ctrl-C, ``kill -INT``), SIGTERM (batch schedulers) and SIGHUP stop the run cleanly.

    Installed explicitly: a process started in the background by a script inherits
    SIGINT *ignored*, and Python then never raises KeyboardInterrupt for it. Only in
    the main thread (where Python delivers signals); previous handlers come back after.
    The backend then asks its workers to save their training where it is (see
    ``LocalBackend._stop``, ``RayBackend.run``), and the run is recorded interrupted.

    SIGHUP means the terminal is gone (a dropped ssh session): writing the progress
    view to it would fail with EIO half-way through the clean stop, so output that
    went to a terminal goes to ``/dev/null`` from then on (files and pipes are kept).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            _detach_from_terminal()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _detach_from_terminal() -> None:
    """Point stdout/stderr at /dev/null where they are a terminal (a character device)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        null = os.fstat(devnull)
        for fd in (1, 2):
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and (st.st_dev, st.st_ino) != (null.st_dev, null.st_ino):
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)
