"""``segbench run``: plan, schedule, record, with a live view of the workers."""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
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
from segbench.store.provenance import run_outputs
from segbench.store.recorder import Recorder, Rerun
from segbench.suite import JobSpec


@dataclass
class RunSummary:
    run_id: int
    total: int
    ran: int = 0
    cached: int = 0
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0


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


def _record(recorder: Recorder, job_id: int, result: JobResult) -> JobResult:
    """Record ``result``; if the database refuses it, record the job as failed and keep going.

    The refused transaction is rolled back whole, so the job is either fully
    recorded or marked failed with the database's reason, never half-written.
    """
    try:
        recorder.record(job_id, result)
        return result
    except Exception as exc:
        refused = JobResult(
            job_key=result.job_key,
            ok=False,
            stage_seconds=result.stage_seconds,
            device=result.device,
            error=f"the database refused this job's results: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            traceback=traceback.format_exc(),
            failed_stage="record",
        )
        recorder.record(job_id, refused)
        return refused


@contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGINT (Ctrl-C, ``kill -INT``) and SIGTERM (batch schedulers) stop the run cleanly.

    Installed explicitly: a process started in the background by a script inherits
    SIGINT *ignored*, and Python then never raises KeyboardInterrupt for it. Only in
    the main thread (where Python delivers signals); previous handlers come back after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    start = time.perf_counter()
    status = "done"
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        overall = progress.add_task(f"[bold]{loaded.suite.name}[/] (run {run_id})", total=len(planned))
        lines: dict[int, int] = {}

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
                result = _record(recorder, event.job_id, result)
                summary.ran += 1
                if not result.ok:
                    summary.failed.append(f"{labels[event.job_id]}: {result.error}")
                    progress.console.print(f"[red]failed[/] {labels[event.job_id]}: {result.error}")
                progress.advance(overall)
                progress.update(line, description=f"  worker {event.worker}: idle")

        try:
            if planned:
                with _stop_signals():
                    backend.run(
                        group_by_training(planned), on_event, checkpoint_dir(workdir, recorder.code_id)
                    )
        except KeyboardInterrupt:
            status = "interrupted"
            summary.interrupted = True
        except BaseException:
            status = "failed"
            raise
        finally:
            recorder.finish(status)
            summary.seconds = time.perf_counter() - start
    return summary
