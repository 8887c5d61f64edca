"""The single writer: runs, planned jobs, results — each step one transaction."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from sqlalchemy import select

import segbench
from segbench.config import LoadedSuite
from segbench.runner.results import JobResult
from segbench.store import provenance
from segbench.store.db import Database
from segbench.store.schema import Artifact, Hardware, Job, Metric, Run, Series
from segbench.suite import JobSpec

Rerun = Literal["none", "failed", "all"]


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class PlannedJob:
    job_id: int
    spec: JobSpec


class Recorder:
    """Writes one run. Everything goes through here; workers never write."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.run_id: int | None = None
        self.code_id: str | None = None

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
            host=provenance.host(),
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
            status="running",
        )
        with self.db.session() as s:
            s.add(run)
            s.flush()
            self.run_id = run.id
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

    def _previous(self, s, suite: str, keys: list[str]) -> dict[str, Job]:  # type: ignore[no-untyped-def]
        """Latest done-or-failed job per key at this code_id (done wins over failed)."""
        rows = s.scalars(
            select(Job)
            .join(Run)
            .where(
                Run.code_id == self.code_id,
                Run.suite_name == suite,
                Run.id != self.run_id,
                Job.job_key.in_(keys),
                Job.status.in_(("done", "failed")),
            )
            .order_by(Job.id)
        ).all()
        best: dict[str, Job] = {}
        for job in rows:
            if job.job_key not in best or job.status == "done" or best[job.job_key].status != "done":
                best[job.job_key] = job
        return best

    def mark_running(self, job_id: int, device: str | None) -> None:
        with self.db.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
            job.status = "running"
            job.device = device
            job.started_at = now()

    def record(self, job_id: int, result: JobResult) -> None:
        """All of a job's numbers in one transaction."""
        with self.db.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
            job.status = "done" if result.ok else "failed"
            job.error = result.error
            job.traceback = result.traceback
            job.device = result.device or job.device
            job.stage_seconds = result.stage_seconds
            job.finished_at = now()
            if result.hardware_key and result.hardware:
                job.hardware_id = self._hardware(s, result.hardware_key, result.hardware)
            for m in result.metrics:
                s.add(
                    Metric(
                        job_id=job_id,
                        stage=m.stage,
                        name=m.name,
                        value=m.value,
                        unit=m.unit,
                        samples=m.samples,
                        extra=m.extra,
                    )
                )
            for ser in result.series:
                s.add(Series(job_id=job_id, name=ser.name, steps=ser.steps, values=ser.values))
            for art in result.artifacts:
                s.add(Artifact(job_id=job_id, name=art.name, media_type=art.media_type, data=art.data))

    @staticmethod
    def _hardware(s, key: str, identity: dict) -> int:  # type: ignore[no-untyped-def]
        hw = s.scalar(select(Hardware).where(Hardware.key == key))
        if hw is None:
            hw = Hardware(
                key=key,
                cpu_model=identity.get("cpu_model"),
                cpu_cores=identity.get("cpu_cores"),
                gpu_name=identity.get("gpu_name"),
                gpu_memory_bytes=identity.get("gpu_memory_bytes"),
                identity=identity,
            )
            s.add(hw)
            s.flush()
        return hw.id

    def finish(self, status: str) -> None:
        """Close the run; jobs still running or pending were cut off, say so."""
        with self.db.session() as s:
            run = s.get(Run, self.run_id)
            assert run is not None
            run.status = status
            run.finished_at = now()
            for job in s.scalars(
                select(Job).where(Job.run_id == self.run_id, Job.status.in_(("running", "pending")))
            ):
                job.status = "interrupted"
                job.finished_at = now()
