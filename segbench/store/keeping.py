"""Keeping every result: what the database cannot take now waits in the journal and is retried.

A result is never recorded as a failure because the database was busy. A
transient failure (locked past the busy timeout, connection lost) puts the
result in the journal (``store/journal.py``) and retries with backoff; what is
still waiting is replayed by the next command that writes the database. A result
the database refuses outright (a constraint) is rolled back whole and the job
recorded failed with the database's reason.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from segbench.jobs import JobResult
from segbench.store import liveness
from segbench.store.db import Database
from segbench.store.journal import Entry, Journal
from segbench.store.schema import Job, Run

#: seconds between attempts to record a result the database could not take (then doubling)
RETRY_FIRST_DELAY = 0.5


def record_patience() -> float:
    """How long a driver retries a result the database cannot take before leaving it in the journal."""
    return liveness.env_seconds("SEGBENCH_RECORD_PATIENCE", 120.0)


R = TypeVar("R")


def patiently(step: Callable[[], R], patience: float) -> R:
    """Run the transaction ``step`` and return what it returns, retrying with backoff for ``patience``
    seconds while the database is busy or unreachable."""
    deadline = time.monotonic() + patience
    delay = RETRY_FIRST_DELAY
    while True:
        try:
            return step()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def transient(exc: BaseException) -> bool:
    """The database cannot take a write *now* (locked, connection lost), as opposed to refusing it."""
    return isinstance(exc, OperationalError | InterfaceError) and not isinstance(exc, IntegrityError)


def database_reason(exc: BaseException) -> str:
    """The database's own words ("database is locked"), not SQLAlchemy's wrapper around them."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first = next(iter(str(orig).strip().splitlines()), "")
    return f"{type(orig).__name__}: {first}"


@dataclass(frozen=True)
class Kept:
    """What became of a result: recorded (``result``; a refusal is recorded as a failed one), or not yet."""

    result: JobResult | None
    #: while the result waits in the journal: the database's reason ("database is locked")
    waiting: str | None = None


@dataclass
class Replayed:
    """What a journal replay recorded (job id → result as recorded), and why the rest still waits."""

    jobs: dict[int, JobResult] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    #: the database's reason, when some results are still waiting in the journal
    waiting: str | None = None


class Keeper:
    """Records results through a busy database, by way of the journal."""

    def __init__(self, db: Database, journal: Journal, record: Callable[[int, JobResult], None]) -> None:
        self.db = db
        self.journal = journal
        #: the writer's one transaction for a job's results
        self.record = record

    def keep(self, run_uid: str, job_id: int, result: JobResult, patience: float) -> Kept:
        """Record ``result``, whatever the database is going through; say what became of it.

        A transient failure (locked past the busy timeout, connection lost) puts
        the result in the journal and retries with backoff for ``patience``
        seconds; if the database still cannot take it, it stays in the journal
        for a later replay. A result the database refuses outright (a
        constraint) is rolled back whole and the job recorded failed with the
        database's reason.
        """
        try:
            self.record(job_id, result)
            return Kept(result)
        except Exception as exc:
            if not transient(exc):
                return Kept(self.refused(job_id, result, exc))
            waiting = database_reason(exc)
        self.journal.append(run_uid, job_id, result)
        deadline = time.monotonic() + patience
        delay = RETRY_FIRST_DELAY
        while time.monotonic() + delay <= deadline:
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
            replayed = self.replay()
            if job_id in replayed.jobs:
                return Kept(replayed.jobs[job_id])
            if not any(e.job_id == job_id and e.run_uid == run_uid for e in self.journal.entries()):
                return Kept(result)  # another command's replay recorded it meanwhile
            waiting = replayed.waiting or waiting
        return Kept(None, waiting)

    def refused(self, job_id: int, result: JobResult, exc: BaseException) -> JobResult:
        """Record the job failed with the database's reason, when the database refused its results."""
        refused = JobResult(
            job_key=result.job_key,
            ok=False,
            stage_seconds=result.stage_seconds,
            device=result.device,
            error=f"the database refused this job's results: {database_reason(exc)}",
            traceback="".join(traceback.format_exception(exc)),
            failed_stage="record",
        )
        self.record(job_id, refused)
        return refused

    def replay(self) -> Replayed:
        """Record what the journal holds; keep there what the database still cannot take."""
        replayed = Replayed()
        if not self.journal.exists():
            return replayed
        with self.journal.replaying() as (entries, kept):
            for entry in entries:
                try:
                    line = self._replay_one(entry, replayed)
                except Exception as exc:
                    if not transient(exc):
                        raise
                    replayed.waiting = database_reason(exc)
                    kept.append(entry)
                    continue
                if line:
                    replayed.lines.append(line)
        return replayed

    def _replay_one(self, entry: Entry, replayed: Replayed) -> str | None:
        """Record one journal entry unless its job holds a result already; the line to report."""
        with self.db.sessions() as s:
            job = s.get(Job, entry.job_id)
            owner = s.get(Run, job.run_id) if job is not None else None
            if job is None or owner is None or owner.uid != entry.run_uid:
                return f"journal: job {entry.job_id} of run {entry.run_uid} is not in this database; dropped"
            if job.status in ("done", "failed"):
                return None  # recorded already (by an earlier replay): nothing twice
            label, run_id = job.label, owner.id
        try:
            self.record(entry.job_id, entry.result)
            replayed.jobs[entry.job_id] = entry.result
        except Exception as exc:
            if transient(exc):
                raise
            replayed.jobs[entry.job_id] = self.refused(entry.job_id, entry.result, exc)
        return f"journal: recorded job {entry.job_id} of run {run_id} ({label})"
