"""``segbench run``: plan, schedule, record, with a live view of the workers."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from segbench.config import LoadedSuite
from segbench.errors import UserError
from segbench.runner.results import JobResult
from segbench.runner.scheduler import Backend, Event, LocalBackend, group_by_training, plan_workers
from segbench.store.db import Database
from segbench.store.liveness import heartbeat, heartbeat_seconds
from segbench.store.provenance import run_outputs
from segbench.store.recorder import (
    PlannedJob,
    Recorder,
    Rerun,
    database_reason,
    record_patience,
    repair,
    transient,
)
from segbench.store.schema import Job
from segbench.suite import JobSpec


@dataclass
class RunSummary:
    run_id: int
    total: int
    ran: int = 0
    cached: int = 0
    #: jobs of this run that failed, and (label: error) of those that reused a failed result
    failed: list[str] = field(default_factory=list)
    cached_failed: list[str] = field(default_factory=list)
    #: jobs whose results wait in the journal (the database could not take them in time)
    journaled: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    def failures(self) -> int:
        """Failures in the suite's latest results: the ones run now and the ones reused."""
        return len(self.failed) + len(self.cached_failed)


def torch_versions() -> dict[str, str | None]:
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": str(cudnn) if cudnn else None}


def checkpoint_dir(workdir: Path, code_id: str) -> Path:
    """Checkpoints are per code version: a model change must never reuse old weights."""
    return workdir / "checkpoints" / code_id


def make_backend(name: str, devices: str, workers: int | None, ray_address: str | None) -> Backend:
    """``--backend local`` (worker processes on this machine) or ``ray`` (a Ray cluster, local or not)."""
    if name == "ray":
        from segbench.runner.ray_backend import RayBackend

        return RayBackend(ray_address, devices, workers)
    if ray_address is not None:
        raise UserError(f"--ray-address {ray_address} goes with --backend ray")
    return LocalBackend(plan_workers(devices, workers))


def _claimed_rounds(
    recorder: Recorder,
    groups: list[list[PlannedJob]],
    adopted: Callable[[PlannedJob, Job], None],
    console: Console,
) -> Iterator[list[list[PlannedJob]]]:
    """The training groups this driver runs, round by round; another driver's are waited for.

    A group is run only under its claim. Once claimed, jobs that another run
    finished meanwhile are adopted (recorded cached, pointing at that result)
    instead of trained again; a group held by a live driver is polled, with
    backoff, until its driver gives the claim up (finished, or gone).
    """
    waiting = groups
    delay = 0.5
    told = False
    while waiting:
        mine, held = [], []
        for group in waiting:
            train_key = group[0].spec.train_key
            if not recorder.claim(train_key):
                held.append(group)
                continue
            found = recorder.adopt_results(group)
            for p in group:
                if p.job_id in found:
                    adopted(p, found[p.job_id])
            rest = [p for p in group if p.job_id not in found]
            if rest:
                mine.append(rest)
        if mine:
            yield mine
            delay = 0.5
        elif held:
            if not told:
                console.print(
                    f"[dim]{len(held)} training group(s) are being run by another segbench run: "
                    "waiting for their results[/]"
                )
                told = True
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)
        waiting = held


#: what stops a run cleanly: Ctrl-C, batch schedulers' SIGTERM, and a closed terminal or ssh session
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGINT (Ctrl-C, ``kill -INT``), SIGTERM (batch schedulers) and SIGHUP stop the run cleanly.

    Installed explicitly: a process started in the background by a script inherits
    SIGINT *ignored*, and Python then never raises KeyboardInterrupt for it. Only in
    the main thread (where Python delivers signals); previous handlers come back after.
    The backend then asks its workers to save their training where it is (see
    ``LocalBackend._stop``), and the run is recorded interrupted.

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
    import os
    import stat

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


def execute(
    loaded: LoadedSuite,
    jobs: list[JobSpec],
    db: Database,
    *,
    backend: Backend,
    rerun: Rerun = "none",
    workdir: Path = Path("results"),
    console: Console | None = None,
) -> RunSummary:
    """Record a run of ``jobs`` in ``db``, executing them on ``backend`` (see :func:`make_backend`)."""
    console = console or Console(stderr=True)
    for line in repair(db):
        console.print(f"[yellow]repaired[/] {line}")
    recorder = Recorder(db)
    outputs = run_outputs(db.sqlite_path, workdir)
    run_id = recorder.start_run(loaded, " ".join(sys.argv), torch_versions(), outputs)
    planned = recorder.plan(jobs, rerun)
    summary = RunSummary(run_id=run_id, total=len(jobs), cached=len(jobs) - len(planned))
    assert recorder.code_id is not None
    labels = {p.job_id: p.spec.label for p in planned}
    if summary.cached:
        console.print(
            f"[dim]{summary.cached} job(s) already done at this commit: reused (--rerun all to redo)[/]"
        )
    train_of = {p.job_id: p.spec.train_key for p in planned}
    unrecorded: dict[str, set[int]] = {}  # train_key -> its jobs without a result in this run yet
    journaled_groups: set[str] = set()
    for p in planned:
        unrecorded.setdefault(p.spec.train_key, set()).add(p.job_id)
    start = time.perf_counter()
    status = "done"
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        ) as progress,
        heartbeat(recorder.beat, heartbeat_seconds()),
    ):
        overall = progress.add_task(f"[bold]{loaded.suite.name}[/] (run {run_id})", total=len(planned))
        lines: dict[int, int] = {}

        def settled(job_id: int, recorded: bool = True) -> None:
            """``job_id`` has its result; the group's claim goes once all of its jobs have recorded theirs.

            A group with a result still in the journal keeps its claim while this
            driver lives: a waiting driver would find no result and train it again.
            """
            key = train_of[job_id]
            unrecorded[key].discard(job_id)
            if not recorded:
                journaled_groups.add(key)
            if not unrecorded[key] and key not in journaled_groups:
                recorder.release(key)  # after the results: a waiting driver adopts them
            progress.advance(overall)

        def adopted(job: PlannedJob, source: Job) -> None:
            summary.cached += 1
            progress.console.print(f"[dim]reused[/] {job.spec.label}: run {source.run_id} ran it meanwhile")
            settled(job.job_id)

        def on_event(event: Event) -> None:
            line = lines.get(event.worker)
            if line is None:
                line = lines[event.worker] = progress.add_task("", total=None)
            if event.kind == "start" and event.job_id is not None:
                recorder.mark_running(event.job_id, event.device or None)
                progress.update(line, description=f"  worker {event.worker}: {event.detail}")
            elif event.kind == "stage" and event.job_id is not None:
                progress.update(
                    line,
                    description=f"  worker {event.worker}: {labels[event.job_id]} · {event.stage} {event.detail}",
                )
            elif event.kind in ("result", "lost") and event.job_id is not None:
                result = event.result or JobResult(
                    job_key="", ok=False, error=event.detail, failed_stage="worker"
                )
                kept = recorder.keep(event.job_id, result, record_patience())
                recorded = kept.result
                summary.ran += 1
                if recorded is None:
                    summary.journaled.append(labels[event.job_id])
                    progress.console.print(
                        f"[yellow]kept[/] {labels[event.job_id]}: the database cannot take its results "
                        f"now ({kept.waiting}); they wait in {recorder.journal.path}"
                    )
                elif not recorded.ok:
                    summary.failed.append(f"{labels[event.job_id]}: {recorded.error}")
                    progress.console.print(f"[red]failed[/] {labels[event.job_id]}: {recorded.error}")
                settled(event.job_id, recorded is not None)
                progress.update(line, description=f"  worker {event.worker}: idle")

        try:
            if planned:
                with _stop_signals():
                    for tasks in _claimed_rounds(recorder, group_by_training(planned), adopted, console):
                        backend.run(tasks, on_event, checkpoint_dir(workdir, recorder.code_id))
        except KeyboardInterrupt:
            status = "interrupted"
            summary.interrupted = True
        except BaseException:
            status = "failed"
            raise
        finally:
            if summary.journaled:
                summary.journaled = [labels[i] for i in _still_journaled(recorder, labels)]
            try:
                recorder.finish(status)
            except Exception as exc:
                if not transient(exc):
                    raise
                # still "running" in the record: the next writing command closes it, its driver gone
                console.print(f"[yellow]could not close run {run_id}[/]: {database_reason(exc)}")
            summary.cached_failed = [f"{label}: {error}" for label, error in recorder.cached_failures()]
            summary.seconds = time.perf_counter() - start
    return summary


def _still_journaled(recorder: Recorder, labels: dict[int, str]) -> list[int]:
    """One last replay before the run closes; the jobs of this run whose results still wait."""
    recorder.replay()
    return [
        e.job_id for e in recorder.journal.entries() if e.run_uid == recorder.run_uid and e.job_id in labels
    ]
