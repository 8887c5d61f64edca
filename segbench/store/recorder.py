"""The single writer: runs, planned jobs, results — each step one transaction.

Besides recording, the writer keeps the record honest when processes die or
the database is busy: the run carries its driver's identity and heartbeat
(``store/liveness.py``), training groups are claimed so that two drivers never
train one twice (``store/claims.py``), and a result the database cannot take right now goes to the
journal (``store/journal.py``) and is retried, never recorded as a failure.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

import segbench
from segbench.config import LoadedSuite
from segbench.jobs import (
    ArtifactValue,
    EvidenceValue,
    JobResult,
    JobSpec,
    MetricValue,
    PlannedJob,
    SeriesValue,
)
from segbench.store import claims, liveness, provenance, reads
from segbench.store.db import Database
from segbench.store.journal import Journal
from segbench.store.keeping import Keeper, Kept, Replayed, patiently, record_patience
from segbench.store.liveness import now
from segbench.store.schema import (
    Artifact,
    Claim,
    Hardware,
    ImageEvidence,
    Job,
    Metric,
    Run,
    Series,
)

Rerun = Literal["none", "failed", "all"]

#: the table each of a result's values is recorded in
_ROWS: dict[type, type] = {
    MetricValue: Metric,
    SeriesValue: Series,
    ArtifactValue: Artifact,
    EvidenceValue: ImageEvidence,
}


def failure_kind(result: JobResult) -> str | None:
    """``model`` for a job's own failure; ``lost`` when its worker died; ``infrastructure`` for the database."""
    if result.ok:
        return None
    if result.failed_stage == "worker":
        return "lost"
    if result.failed_stage == "record":
        return "infrastructure"
    return "model"


class Recorder:
    """Writes one run. Everything goes through here; workers never write."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.run_id: int | None = None
        self.run_uid: str | None = None
        self.code_id: str | None = None
        self.journal = Journal(db.url)
        self.keeper = Keeper(db, self.journal, self.record)

    def start_run(
        self,
        loaded: LoadedSuite,
        command: str,
        versions: dict[str, str | None],
        outputs: tuple[Path, ...] = (),
    ) -> int:
        """Record the run's start; ``outputs`` (what the run writes itself) never make a tree dirty."""
        sb = provenance.segbench_git_state(outputs)
        st = provenance.git_state(loaded.path, outputs)
        self.code_id = provenance.code_id(sb, st)
        env = provenance.environment()
        driver = liveness.Driver.this_process()
        run = Run(
            uid=str(uuid.uuid4()),
            suite_name=loaded.suite.name,
            suite_path=str(loaded.path),
            suite_text=loaded.text,
            suite_sha=hashlib.sha256(loaded.text.encode()).hexdigest(),
            suite_commit=st.commit,
            suite_branch=st.branch,
            suite_dirty=st.dirty,
            segbench_commit=sb.commit,
            segbench_branch=sb.branch,
            segbench_dirty=sb.dirty,
            code_id=self.code_id,
            host=driver.host,
            driver_pid=driver.pid,
            driver_started=driver.started,
            driver_boot=driver.boot,
            segbench_version=segbench.__version__,
            torch_version=versions.get("torch"),
            cuda_version=versions.get("cuda"),
            cudnn_version=versions.get("cudnn"),
            python_version=env["python"],
            command=command,
            environment={
                **env,
                "segbench_git": provenance.as_dict(sb),
                "suite_git": provenance.as_dict(st),
            },
            started_at=now(),
            heartbeat_at=now(),
            status="running",
        )
        with self.db.session() as s:
            s.add(run)
            s.flush()
            self.run_id = run.id
        self.run_uid = run.uid
        return run.id

    def plan(self, jobs: list[JobSpec], rerun: Rerun = "none") -> list[PlannedJob]:
        """Insert every job of the run; return those that must actually run.

        A job whose key already finished (or failed) at the same code_id in an
        earlier run of this suite is recorded as ``cached`` and points at that
        result, unless ``rerun`` asks for it again.
        """
        assert self.run_id is not None and self.code_id is not None
        todo: list[PlannedJob] = []
        with self.db.session() as s:
            previous = self._previous(s, jobs[0].suite if jobs else "", [j.job_key for j in jobs])
            for position, spec in enumerate(jobs):
                prior = previous.get(spec.job_key)
                reuse = prior is not None and (
                    rerun == "none" or (rerun == "failed" and prior.status == "done")
                )
                job = Job(
                    run_id=self.run_id,
                    job_key=spec.job_key,
                    train_key=spec.train_key,
                    position=position,
                    label=spec.label,
                    model=spec.model,
                    model_label=spec.model_label,
                    dataset=spec.dataset,
                    dataset_label=spec.dataset_label,
                    block=spec.block,
                    variant=spec.variant,
                    seed=spec.seed,
                    factors=spec.factors,
                    config=spec.to_dict(),
                    status="cached" if reuse else "pending",
                    source_job_id=prior.id if reuse and prior else None,
                    stage_seconds={},
                )
                s.add(job)
                s.flush()
                if not reuse:
                    todo.append(PlannedJob(job.id, spec))
        return todo

    def _previous(self, s, suite: str, keys: list[str], since: datetime | None = None) -> dict[str, Job]:  # type: ignore[no-untyped-def]
        """Latest result per key at this code_id (done wins over failed).

        Only a model's own failure counts as a result; a job lost with its worker
        or refused by the database was never measured, so it runs again. Failed
        rows without a kind predate failure kinds; migration 0002 classified them.
        """
        rows = s.scalars(
            select(Job)
            .join(Run)
            .where(
                Run.code_id == self.code_id,
                Run.suite_name == suite,
                Run.id != self.run_id,
                Job.job_key.in_(keys),
                (Job.status == "done")
                | ((Job.status == "failed") & ((Job.failure_kind == "model") | Job.failure_kind.is_(None))),
                *([Job.finished_at >= since] if since is not None else []),
            )
            .order_by(Job.id)
        ).all()
        best: dict[str, Job] = {}
        for job in rows:
            if job.job_key not in best or job.status == "done" or best[job.job_key].status != "done":
                best[job.job_key] = job
        return best

    def mark_running(self, job_id: int, device: str | None) -> None:
        """Best effort: a busy database only delays the "running" mark, never the job."""
        try:
            with self.db.session() as s:
                job = s.get(Job, job_id)
                assert job is not None
                job.status = "running"
                job.device = device
                job.started_at = now()
        except (OperationalError, InterfaceError):
            pass

    def record(self, job_id: int, result: JobResult) -> None:
        """All of a job's numbers in one transaction; a job that holds its result already keeps it.

        A result can reach the writer twice (a retried Ray task, a journal replay
        racing the driver, a commit whose acknowledgement the connection lost):
        the first one recorded stands, so a job is recorded exactly once.
        """
        with self.db.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
            if job.status in ("done", "failed"):
                return
            job.status = "done" if result.ok else "failed"
            job.failure_kind = failure_kind(result)
            job.error = result.error
            job.traceback = result.traceback
            job.device = result.device or job.device
            job.stage_seconds = result.stage_seconds
            job.finished_at = now()
            if result.hardware_key and result.hardware:
                job.hardware_id = self._hardware(s, result.hardware_key, result.hardware)
            # The value types name their columns (segbench/jobs.py): one row each, field for field.
            values = [*result.metrics, *result.series, *result.artifacts]
            if result.evidence is not None:
                values.append(result.evidence)
            for value in values:
                s.add(_ROWS[type(value)](job_id=job_id, **vars(value)))

    @staticmethod
    def _hardware(s, key: str, identity: dict) -> int:  # type: ignore[no-untyped-def]
        """The hardware row of ``key``, inserted if new.

        Two drivers recording their first result on one machine at once (a team on
        one server) both find it missing: the second insert fails on the unique key,
        inside a savepoint, and the first one's row is used.
        """
        hw = s.scalar(select(Hardware).where(Hardware.key == key))
        if hw is not None:
            return hw.id
        hw = Hardware(
            key=key,
            cpu_model=identity.get("cpu_model"),
            cpu_cores=identity.get("cpu_cores"),
            gpu_name=identity.get("gpu_name"),
            gpu_memory_bytes=identity.get("gpu_memory_bytes"),
            identity=identity,
        )
        try:
            with s.begin_nested():
                s.add(hw)
        except IntegrityError:
            return s.scalar(select(Hardware.id).where(Hardware.key == key))
        return hw.id

    def finish(self, status: str) -> None:
        """Close the run and free its claims; jobs still running or pending were cut off, say so.

        A job whose result waits in the journal says where it is.
        """
        journaled = {e.job_id for e in self.journal.entries() if e.run_uid == self.run_uid}

        def close() -> None:
            with self.db.session() as s:
                run = s.get(Run, self.run_id)
                assert run is not None
                run.status = status
                run.finished_at = now()
                for job in s.scalars(
                    select(Job).where(Job.run_id == self.run_id, Job.status.in_(liveness.UNFINISHED))
                ):
                    job.status = "interrupted"
                    job.failure_kind = "interrupted"
                    job.finished_at = now()
                    if job.id in journaled:
                        job.error = (
                            f"its results wait in {self.journal.path}: the next command that writes this "
                            "database records them (segbench db repair)"
                        )
                s.execute(delete(Claim).where(Claim.run_id == self.run_id))

        patiently(close, record_patience())

    # --- keeping every result (store/keeping.py) -------------------------------------------------

    def keep(self, job_id: int, result: JobResult, patience: float) -> Kept:
        """Record ``result`` for this run, through the journal if the database cannot take it now."""
        assert self.run_uid is not None
        return self.keeper.keep(self.run_uid, job_id, result, patience)

    def replay(self) -> Replayed:
        """Record what the journal holds (any run's); keep there what the database still cannot take."""
        return self.keeper.replay()

    # --- liveness and claims -----------------------------------------------------------------

    def beat(self) -> None:
        """The driver is alive: refresh the run's heartbeat and extend its claims' leases."""
        at = now()
        with self.db.session() as s:
            s.execute(update(Run).where(Run.id == self.run_id).values(heartbeat_at=at))
            s.execute(
                update(Claim)
                .where(Claim.run_id == self.run_id)
                .values(lease_until=at + timedelta(seconds=liveness.lease_seconds()))
            )

    def claim(self, train_key: str) -> bool:
        """Take the claim on training group ``train_key`` (at this code_id), or say another driver holds it."""
        assert self.run_id is not None and self.code_id is not None
        return claims.take(self.db, self.code_id, train_key, self.run_id)

    def release(self, train_key: str) -> None:
        assert self.run_id is not None and self.code_id is not None
        claims.release(self.db, self.code_id, train_key, self.run_id)

    def adopt_results(self, planned: list[PlannedJob]) -> dict[int, reads.JobRecord]:
        """Jobs of ``planned`` another run has meanwhile finished: recorded cached, pointing at that result.

        Returns, per adopted job id, the job whose result it now points at.

        Called once this driver holds the group's claim, so the other driver
        finished (and recorded) before giving the claim up. Only results
        recorded since this run began count: they are the work this run would
        have done; older ones were for :meth:`plan` (and ``--rerun``) to judge.
        """
        if not planned:
            return {}
        adopted: dict[int, reads.JobRecord] = {}
        with self.db.session() as s:
            run = s.get(Run, self.run_id)
            assert run is not None
            keys = [p.spec.job_key for p in planned]
            previous = self._previous(s, planned[0].spec.suite, keys, since=run.started_at)
            for p in planned:
                source = previous.get(p.spec.job_key)
                if source is None:
                    continue
                job = s.get(Job, p.job_id)
                assert job is not None
                job.status = "cached"
                job.source_job_id = source.id
                adopted[p.job_id] = reads.job_record(source)
        return adopted

    def cached_failures(self) -> list[tuple[str, str | None]]:
        """(label, error) of this run's jobs that reuse a failed result: the suite's latest word on them."""
        with self.db.sessions() as s:
            source = Job.__table__.alias("source")
            rows = s.execute(
                select(Job.label, source.c.error)
                .join(source, source.c.id == Job.source_job_id)
                .where(Job.run_id == self.run_id, Job.status == "cached", source.c.status == "failed")
                .order_by(Job.position)
            ).all()
        return [(label, error) for label, error in rows]


def repair(db: Database) -> list[str]:
    """What every writing command does first: the journal replayed, runs with a dead driver closed.

    Returns a line per change (``segbench db repair`` prints them).
    """
    recorder = Recorder(db)
    replayed = recorder.replay()  # first: a dead driver's journaled results finish its jobs
    lines = replayed.lines
    if replayed.waiting:
        lines.append(f"journal: {recorder.journal.path} still holds results ({replayed.waiting})")

    def close_dead_runs() -> None:
        with db.session() as s:
            lines.extend(liveness.reconcile(s))

    patiently(close_dead_runs, record_patience())
    return lines
