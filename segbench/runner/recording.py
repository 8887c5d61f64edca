"""The recording listener: every event of a run becomes a record, and nothing is trained twice.

It sits between a backend's events and the store's single writer. A job that
starts is marked running; a result (or a loss) is kept — recorded, or left in
the journal when the database cannot take it — with its failure kind; the
driver's heartbeat runs while the jobs do; and training groups are run only
under their claim, the claim given up once every job of the group has its
result recorded. What a person watching should hear goes to a :class:`RunView`
(the rich progress view), so recording and display stay apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from segbench.jobs import JobResult, PlannedJob
from segbench.runner.backend import Event, group_by_training
from segbench.store.keeping import database_reason, patiently, record_patience, transient
from segbench.store.liveness import heartbeat, heartbeat_seconds
from segbench.store.reads import JobRecord
from segbench.store.recorder import Recorder


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


class RunView(Protocol):
    """What the recording tells the person watching the run."""

    def settled(self) -> None:
        """One more job has its result (run, adopted, or kept in the journal)."""

    def reused(self, label: str, run_id: int) -> None:
        """Another run ran this job meanwhile: its result is reused."""

    def failed(self, label: str, error: str | None) -> None:
        """The job's result is recorded, as a failure."""

    def kept(self, label: str, waiting: str | None, journal: Path) -> None:
        """The database cannot take the job's result now (``waiting``): it waits in ``journal``."""

    def waiting(self, groups: int) -> None:
        """``groups`` training groups are held by another run: this one waits for their results."""

    def unclosed(self, run_id: int, reason: str) -> None:
        """The run could not be closed (``reason``): the next writing command closes it."""


class RecordingListener:
    """Records one run's events through its :class:`Recorder`; fills in the run's :class:`RunSummary`."""

    def __init__(
        self, recorder: Recorder, planned: list[PlannedJob], summary: RunSummary, view: RunView
    ) -> None:
        self.recorder = recorder
        self.planned = planned
        self.summary = summary
        self.view = view
        self.labels = {p.job_id: p.spec.label for p in planned}
        self._train_of = {p.job_id: p.spec.train_key for p in planned}
        #: train_key -> its jobs without a result in this run yet
        self._unrecorded: dict[str, set[int]] = {}
        for p in planned:
            self._unrecorded.setdefault(p.spec.train_key, set()).add(p.job_id)
        self._journaled_groups: set[str] = set()
        #: job id -> the latest attempt heard from (a retried Ray task); jobs whose result is kept
        self._attempts: dict[int, int] = {}
        self._kept: set[int] = set()

    def heartbeat(self) -> AbstractContextManager[None]:
        """The driver's heartbeat (and its claims' leases) while the block runs."""
        return heartbeat(self.recorder.beat, heartbeat_seconds())

    def rounds(self) -> Iterator[list[list[PlannedJob]]]:
        """The training groups this driver runs, round by round; another driver's are waited for.

        A group is run only under its claim. Once claimed, jobs that another run
        finished meanwhile are adopted (recorded cached, pointing at that result)
        instead of trained again; a group held by a live driver is polled, with
        backoff, until its driver gives the claim up (finished, or gone).
        """
        waiting = group_by_training(self.planned)
        delay = 0.5
        told = False
        while waiting:
            mine, held = [], []
            for group in waiting:
                if not patiently(partial(self.recorder.claim, group[0].spec.train_key), record_patience()):
                    held.append(group)
                    continue
                found = patiently(partial(self.recorder.adopt_results, group), record_patience())
                for p in group:
                    if p.job_id in found:
                        self._adopted(p, found[p.job_id])
                rest = [p for p in group if p.job_id not in found]
                if rest:
                    mine.append(rest)
            if mine:
                yield mine
                delay = 0.5
            elif held:
                if not told:
                    self.view.waiting(len(held))
                    told = True
                time.sleep(delay)
                delay = min(delay * 1.5, 5.0)
            waiting = held

    def on_event(self, event: Event) -> None:
        """A job started (marked running), or has its result or was lost (kept, with its failure kind)."""
        if event.job_id is None or not self._news(event):
            return
        if event.kind == "start":
            self.recorder.mark_running(event.job_id, event.device or None)
        elif event.kind in ("result", "lost"):
            result = event.result or JobResult(
                job_key="", ok=False, error=event.detail, failed_stage="worker"
            )
            self._kept.add(event.job_id)
            kept = self.recorder.keep(event.job_id, result, record_patience())
            recorded = kept.result
            label = self.labels[event.job_id]
            self.summary.ran += 1
            if recorded is None:
                self.summary.journaled.append(label)
                self.view.kept(label, kept.waiting, self.recorder.journal.path)
            elif not recorded.ok:
                self.summary.failed.append(f"{label}: {recorded.error}")
                self.view.failed(label, recorded.error)
            self._settled(event.job_id, recorded is not None)

    def _news(self, event: Event) -> bool:
        """Whether ``event`` is to be recorded: one result per job, nothing from an attempt superseded.

        A lost attempt's events that arrive after its retry began (or a second
        result for a job, however it came) are dropped here; the recorder also
        keeps a job's first recorded result (``Recorder.record``).
        """
        assert event.job_id is not None
        if event.job_id in self._kept or event.attempt < self._attempts.get(event.job_id, 0):
            return False
        self._attempts[event.job_id] = event.attempt
        return True

    def close(self, status: str) -> None:
        """Close the run as ``status``; the summary learns which results still wait, and which reused failures."""
        recorder, summary = self.recorder, self.summary
        if summary.journaled:
            summary.journaled = [self.labels[i] for i in self._still_journaled()]
        try:
            recorder.finish(status)
        except Exception as exc:
            if not transient(exc):
                raise
            # still "running" in the record: the next writing command closes it, its driver gone
            self.view.unclosed(summary.run_id, database_reason(exc))
        summary.cached_failed = [f"{label}: {error}" for label, error in recorder.cached_failures()]

    def _settled(self, job_id: int, recorded: bool = True) -> None:
        """``job_id`` has its result; the group's claim goes once all of its jobs have recorded theirs.

        A group with a result still in the journal keeps its claim while this
        driver lives: a waiting driver would find no result and train it again.
        """
        key = self._train_of[job_id]
        self._unrecorded[key].discard(job_id)
        if not recorded:
            self._journaled_groups.add(key)
        if not self._unrecorded[key] and key not in self._journaled_groups:
            try:
                self.recorder.release(key)  # after the results: a waiting driver adopts them
            except Exception as exc:
                if not transient(exc):
                    raise
                # the connection is lost for now: closing the run frees its claims (Recorder.finish)
        self.view.settled()

    def _adopted(self, job: PlannedJob, source: JobRecord) -> None:
        self.summary.cached += 1
        self.view.reused(job.spec.label, source.run_id)
        self._settled(job.job_id)

    def _still_journaled(self) -> list[int]:
        """One last replay before the run closes; the jobs of this run whose results still wait."""
        recorder = self.recorder
        recorder.replay()
        return [
            e.job_id
            for e in recorder.journal.entries()
            if e.run_uid == recorder.run_uid and e.job_id in self.labels
        ]
