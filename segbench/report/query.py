"""Queries from the results database into pandas, shared by every report.

One row per job of the chosen run. A job recorded as ``cached`` (its key was
already done at the same code version) shows the numbers of the job it points
to, so a re-run's report is complete without re-measuring anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from segbench.errors import UserError
from segbench.evidence import Evidence
from segbench.store.db import Database
from segbench.store.liveness import UNFINISHED, gone_reason
from segbench.store.schema import ImageEvidence, Job, Metric, Run

META_COLUMNS = (
    "job_id",
    "job_key",
    "position",
    "label",
    "status",
    "model",
    "model_label",
    "dataset",
    "dataset_label",
    "block",
    "variant",
    "seed",
    "device",
    "error",
)
FACTOR_PREFIX = "factor:"


@dataclass(frozen=True)
class RunInfo:
    id: int
    suite_name: str
    suite_text: str
    status: str
    started_at: Any
    segbench_commit: str | None
    segbench_dirty: bool | None
    suite_commit: str | None
    suite_dirty: bool | None
    host: str
    #: why the run's results are not all there (still running, interrupted, its driver gone), else None
    incomplete: str | None = None


@dataclass
class ReportData:
    """The chosen run and its jobs: metadata, ``factor:<name>`` columns, one column per metric."""

    run: RunInfo
    jobs: pd.DataFrame
    #: (job_id, metric) → the Metric row's unit, samples and extra, for captions and notes
    details: dict[tuple[int, str], dict[str, Any]]
    #: job_id → the per-image evidence of its evaluation (jobs recorded with it)
    evidence: dict[int, Evidence] = field(default_factory=dict)

    def factor_names(self) -> list[str]:
        return [c[len(FACTOR_PREFIX) :] for c in self.jobs.columns if c.startswith(FACTOR_PREFIX)]


def find_run(session: Session, suite: str | None, run: str | int | None) -> Run:
    """``--run ID`` or the latest run (of ``--suite`` if given)."""
    if run not in (None, "latest"):
        try:
            run_id = int(run)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UserError(
                f"--run '{run}': expected a run id (see `segbench list runs`) or 'latest'"
            ) from None
        found = session.get(Run, run_id)
        if found is None:
            raise UserError(f"--run {run_id}: no such run (see `segbench list runs`)")
        return found
    query = select(Run).order_by(Run.id.desc()).limit(1)
    if suite:
        query = query.where(Run.suite_name == suite)
    found = session.scalar(query)
    if found is None:
        if suite:
            names = session.scalars(select(Run.suite_name).distinct()).all()
            from segbench.errors import did_you_mean

            raise UserError(f"no runs of suite '{suite}'{did_you_mean(suite, names)} in this database")
        raise UserError("this database has no runs yet: `segbench run SUITE.yaml` records some")
    return found


def source_of(session: Session, job: Job) -> Job:
    """Follow ``cached`` links to the job that holds the numbers."""
    seen = set()
    while job.status == "cached" and job.source_job_id is not None and job.id not in seen:
        seen.add(job.id)
        nxt = session.get(Job, job.source_job_id)
        if nxt is None:
            break
        job = nxt
    return job


def incomplete_note(run: Run, statuses: list[str], gone: str | None) -> str | None:
    """The report's line for a run whose results are not all there, or None when they are.

    ``statuses`` are the jobs' as the report shows them; ``gone`` is why the
    driver of a run still recorded as running is dead (the report says so
    without writing: ``segbench db repair`` records it).
    """
    missing = sum(status in (*UNFINISHED, "interrupted") for status in statuses)
    of = f"{missing} of {len(statuses)} job(s) have no result"
    if gone is not None:
        return (
            f"run {run.id} is incomplete: it is recorded as running but {gone}; {of}. "
            "`segbench db repair` records it as interrupted; run the suite again to finish it."
        )
    if run.status == "running":
        return f"run {run.id} is still running: {of} yet."
    if missing or run.status == "interrupted":
        return f"run {run.id} is incomplete ({run.status}): {of}; run the suite again to finish it."
    return None


def load_report_data(db: Database, suite: str | None = None, run: str | int | None = None) -> ReportData:
    with db.sessions() as session:
        chosen = find_run(session, suite, run)
        gone = gone_reason(chosen)
        info = RunInfo(
            id=chosen.id,
            suite_name=chosen.suite_name,
            suite_text=chosen.suite_text,
            status="interrupted" if gone else chosen.status,
            started_at=chosen.started_at,
            segbench_commit=chosen.segbench_commit,
            segbench_dirty=chosen.segbench_dirty,
            suite_commit=chosen.suite_commit,
            suite_dirty=chosen.suite_dirty,
            host=chosen.host,
        )
        jobs = session.scalars(select(Job).where(Job.run_id == chosen.id).order_by(Job.position)).all()
        sources = {job.id: source_of(session, job) for job in jobs}
        metric_rows = session.execute(
            select(Metric).where(Metric.job_id.in_([s.id for s in sources.values()]))
        ).scalars()
        by_job: dict[int, dict[str, Metric]] = {}
        for m in metric_rows:
            by_job.setdefault(m.job_id, {})[m.name] = m
        records = []
        details: dict[tuple[int, str], dict[str, Any]] = {}
        for job in jobs:
            src = sources[job.id]
            status = src.status if job.status == "cached" else job.status
            if gone and status in UNFINISHED:
                status = "interrupted"  # its driver is gone: nothing will finish it
            rec: dict[str, Any] = {
                "job_id": job.id,
                "job_key": job.job_key,
                "position": job.position,
                "label": job.label,
                "status": status,
                "model": job.model,
                "model_label": job.model_label,
                "dataset": job.dataset,
                "dataset_label": job.dataset_label,
                "block": job.block,
                "variant": job.variant,
                "seed": job.seed,
                "device": src.device,
                "error": src.error,
            }
            for key, value in (job.factors or {}).items():
                rec[FACTOR_PREFIX + key] = _hashable(value)
            for name, m in by_job.get(src.id, {}).items():
                rec[name] = m.value
                details[(job.id, name)] = {"unit": m.unit, "samples": m.samples, "extra": m.extra}
            records.append(rec)
        evidence = load_evidence(session, {job.id: sources[job.id].id for job in jobs})
        info = replace(info, incomplete=incomplete_note(chosen, [r["status"] for r in records], gone))
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame(columns=list(META_COLUMNS))
    return ReportData(run=info, jobs=frame, details=details, evidence=evidence)


def load_evidence(session: Session, sources: dict[int, int]) -> dict[int, Evidence]:
    """job id → the evidence its source job recorded (``sources``: job id → source job id)."""
    rows = session.scalars(select(ImageEvidence).where(ImageEvidence.job_id.in_(set(sources.values()))))
    by_source = {row.job_id: decode_evidence(row) for row in rows}
    return {job: by_source[src] for job, src in sources.items() if src in by_source}


def decode_evidence(row: ImageEvidence) -> Evidence:
    return Evidence.decode(row.dataset, row.split, row.images_sha, row.data, row.format)


def _hashable(value: Any) -> Any:
    """Lists become tuples so factor values can be grouped on."""
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value
