"""The progress view of a run: a bar for its jobs and a line per worker, drawn with rich.

Display only: it records nothing. It hears the backend's events (what each
worker is doing) and what the recording listener has to say (a job reused,
failed, or kept in the journal); see :class:`~segbench.runner.recording.RunView`.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from segbench.runner.backend import Event


class ProgressView:
    """The live view; a context manager (the bar is drawn while it is open)."""

    def __init__(self, console: Console, title: str, total: int, labels: dict[int, str]) -> None:
        self.console = console
        self.labels = labels
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._title = title
        self._total = total
        self._lines: dict[int, TaskID] = {}  # worker -> its line

    def __enter__(self) -> ProgressView:
        self._progress.__enter__()
        self._overall = self._progress.add_task(self._title, total=self._total)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.__exit__(kind, exc, tb)

    def on_event(self, event: Event) -> None:
        """What a worker does now: the job it started, the stage it reached, or idle after a result."""
        line = self._lines.get(event.worker)
        if line is None:
            line = self._lines[event.worker] = self._progress.add_task("", total=None)
        if event.job_id is None:
            return
        worker = f"  worker {event.worker}"
        if event.kind == "start":
            self._progress.update(line, description=f"{worker}: {event.detail}")
        elif event.kind == "stage":
            label = self.labels[event.job_id]
            self._progress.update(line, description=f"{worker}: {label} · {event.stage} {event.detail}")
        elif event.kind in ("result", "lost"):
            self._progress.update(line, description=f"{worker}: idle")
        elif event.kind == "retry":
            self._progress.console.print(f"[yellow]retry[/] {self.labels[event.job_id]}: {event.detail}")

    # --- what the recording listener says (RunView) -------------------------------------------

    def settled(self) -> None:
        self._progress.advance(self._overall)

    def reused(self, label: str, run_id: int) -> None:
        self._progress.console.print(f"[dim]reused[/] {label}: run {run_id} ran it meanwhile")

    def failed(self, label: str, error: str | None) -> None:
        self._progress.console.print(f"[red]failed[/] {label}: {error}")

    def kept(self, label: str, waiting: str | None, journal: Path) -> None:
        self._progress.console.print(
            f"[yellow]kept[/] {label}: the database cannot take its results now ({waiting}); "
            f"they wait in {journal}"
        )

    def waiting(self, groups: int) -> None:
        self.console.print(
            f"[dim]{groups} training group(s) are being run by another segbench run: waiting for their results[/]"
        )

    def unclosed(self, run_id: int, reason: str) -> None:
        self.console.print(f"[yellow]could not close run {run_id}[/]: {reason}")
