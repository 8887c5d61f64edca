"""``segbench db merge``: results measured elsewhere, into this database, once.

Each machine (a laptop, a CI runner, a GPU box) writes its own SQLite file;
merging them gives one history. A run is identified by its ``uid`` (a UUID made
when it started), a machine by its hardware ``key``, so merging the same file
twice adds nothing. Row ids differ between databases and are remapped,
including the ``source_job_id`` links of cached jobs, which may point into a
run merged earlier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from segbench.errors import UserError
from segbench.store.db import Database
from segbench.store.schema import (
    Artifact,
    Base,
    Hardware,
    ImageEvidence,
    Job,
    Metric,
    Run,
    Series,
    TimingRound,
)

_Row = TypeVar("_Row", bound=Base)


@dataclass
class MergeSummary:
    runs_added: int = 0
    runs_present: int = 0
    jobs_added: int = 0
    metrics_added: int = 0
    hardware_added: int = 0
    #: uids of runs still running in the other database: merge again when they finish
    runs_in_progress: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = (
            f"{self.runs_added} run(s) added ({self.jobs_added} jobs, {self.metrics_added} metrics), "
            f"{self.runs_present} already here, {self.hardware_added} new machine(s)"
        )
        if self.runs_in_progress:
            text += f"; {len(self.runs_in_progress)} run(s) still in progress were left for a later merge"
        return text


def same_database(a: Database, b: Database) -> bool:
    """True when both URLs name one database (one SQLite file under two spellings included)."""
    ua, ub = make_url(a.url), make_url(b.url)
    if (
        a.is_sqlite
        and b.is_sqlite
        and ua.database
        and ub.database
        and ":memory:" not in (ua.database, ub.database)
    ):
        pa, pb = Path(ua.database), Path(ub.database)
        return pa.exists() and pb.exists() and pa.samefile(pb)
    return ua.render_as_string(hide_password=False) == ub.render_as_string(hide_password=False)


def merge_databases(target: Database, source: Database) -> MergeSummary:
    """Copy every finished run of ``source`` that ``target`` lacks, in one transaction on ``target``."""
    if same_database(target, source):
        raise UserError(
            f"db merge: {source.display_url} is this database; merging it into itself adds nothing"
        )
    summary = MergeSummary()
    with source.sessions() as src, target.session() as dst:
        hardware = _merge_hardware(src, dst, summary)
        present = dict(dst.execute(select(Run.uid, Run.id)).all())
        job_ids: dict[int, int] = {}
        links: list[tuple[Job, int]] = []
        for run in src.scalars(select(Run).order_by(Run.id)):
            if run.uid in present:
                summary.runs_present += 1
                job_ids.update(_present_jobs(src, dst, run.id, present[run.uid]))
                continue
            if run.status == "running":
                summary.runs_in_progress.append(run.uid)
                continue
            new_run = _copy(run, Run)
            dst.add(new_run)
            dst.flush()
            summary.runs_added += 1
            for job in run.jobs:
                new_job = _copy(
                    job,
                    Job,
                    run_id=new_run.id,
                    hardware_id=hardware.get(job.hardware_id) if job.hardware_id is not None else None,
                    source_job_id=None,
                )
                dst.add(new_job)
                dst.flush()
                job_ids[job.id] = new_job.id
                summary.jobs_added += 1
                if job.source_job_id is not None:
                    links.append((new_job, job.source_job_id))
                dst.add_all(_copy(m, Metric, job_id=new_job.id) for m in job.metrics)
                dst.add_all(_copy(s, Series, job_id=new_job.id) for s in job.series)
                dst.add_all(_copy(a, Artifact, job_id=new_job.id) for a in job.artifacts)
                if job.evidence is not None:
                    dst.add(_copy(job.evidence, ImageEvidence, job_id=new_job.id))
                rounds = src.scalars(select(TimingRound).where(TimingRound.job_id == job.id))
                dst.add_all(_copy(r, TimingRound, job_id=new_job.id) for r in rounds)
                summary.metrics_added += len(job.metrics)
        for new_job, old_source in links:
            # A source in a run still in progress over there stays unlinked: the job then counts as
            # not done, which is true here until that run is merged.
            new_job.source_job_id = job_ids.get(old_source)
    return summary


def _merge_hardware(src: Session, dst: Session, summary: MergeSummary) -> dict[int, int]:
    known = dict(dst.execute(select(Hardware.key, Hardware.id)).all())
    ids: dict[int, int] = {}
    for hw in src.scalars(select(Hardware)):
        if hw.key not in known:
            copy = _copy(hw, Hardware)
            dst.add(copy)
            dst.flush()
            known[hw.key] = copy.id
            summary.hardware_added += 1
        ids[hw.id] = known[hw.key]
    return ids


def _present_jobs(src: Session, dst: Session, src_run_id: int, dst_run_id: int) -> dict[int, int]:
    """Job ids of a run both databases hold, matched by job_key (unique within a run)."""
    here = dict(dst.execute(select(Job.job_key, Job.id).where(Job.run_id == dst_run_id)).all())
    there = src.execute(select(Job.id, Job.job_key).where(Job.run_id == src_run_id)).all()
    return {old: here[key] for old, key in there if key in here}


def _copy(row: Base, model: type[_Row], **overrides: Any) -> _Row:
    """A new, unsaved row of ``model`` with ``row``'s column values (never its id)."""
    values = {attr.key: getattr(row, attr.key) for attr in sa_inspect(model).column_attrs if attr.key != "id"}
    values.update(overrides)
    return model(**values)
