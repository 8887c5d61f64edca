"""``segbench run``: plan, schedule, record, with a live view of the workers.

:func:`execute` composes three parts: the backend runs the jobs and sends their
events (``runner/backend.py``); the recording listener records them
(``runner/recording.py``: claims, journal, heartbeat, failure kinds); the
progress view shows them (``runner/progress.py``). The run's stop signals are
the backend module's (:func:`~segbench.runner.backend.stop_signals`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console

from segbench.config import LoadedSuite
from segbench.errors import UserError
from segbench.jobs import JobSpec
from segbench.runner.backend import Backend, Event, RetryPolicy, stop_signals
from segbench.runner.devices import plan_workers
from segbench.runner.local_backend import LocalBackend
from segbench.runner.progress import ProgressView
from segbench.runner.recording import RecordingListener, RunSummary
from segbench.store.db import Database
from segbench.store.provenance import run_outputs
from segbench.store.recorder import Recorder, Rerun, repair


def torch_versions() -> dict[str, str | None]:
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": str(cudnn) if cudnn else None}


def checkpoint_dir(workdir: Path, code_id: str) -> Path:
    """Checkpoints are per code version: a model change must never reuse old weights."""
    return workdir / "checkpoints" / code_id


def make_backend(
    name: str,
    devices: str,
    workers: int | None,
    ray_address: str | None,
    retry: RetryPolicy | None = None,
) -> Backend:
    """``--backend local`` (worker processes on this machine) or ``ray`` (a Ray cluster, local or not).

    ``retry`` (``--retries``, ``--retry-delay``) is the Ray backend's: a local
    worker that dies costs its group, recorded lost, and a plain re-run retries it.
    """
    if name == "ray":
        from segbench.runner.ray_backend import RayBackend

        return RayBackend(ray_address, devices, workers, retry)
    if ray_address is not None:
        raise UserError(f"--ray-address {ray_address} goes with --backend ray")
    if retry is not None:
        raise UserError("--retries and --retry-delay go with --backend ray")
    return LocalBackend(plan_workers(devices, workers))


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
    checkpoints = checkpoint_dir(workdir, recorder.code_id)
    if summary.cached:
        console.print(
            f"[dim]{summary.cached} job(s) already done at this commit: reused (--rerun all to redo)[/]"
        )
    start = time.perf_counter()
    title = f"[bold]{loaded.suite.name}[/] (run {run_id})"
    with ProgressView(console, title, len(planned), {p.job_id: p.spec.label for p in planned}) as view:
        recording = RecordingListener(recorder, planned, summary, view)

        def on_event(event: Event) -> None:
            recording.on_event(event)
            view.on_event(event)

        status = "done"
        with recording.heartbeat():
            try:
                if planned:
                    with stop_signals():
                        for tasks in recording.rounds():
                            backend.run(tasks, on_event, checkpoints)
            except KeyboardInterrupt:
                status = "interrupted"
                summary.interrupted = True
            except BaseException:
                status = "failed"
                raise
            finally:
                recording.close(status)
                summary.seconds = time.perf_counter() - start
    return summary
