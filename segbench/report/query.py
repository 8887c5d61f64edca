"""A run's results as the reports read them: pandas rows, evidence, curves and samples.

The records come from :mod:`segbench.store.reads` (no query is written here);
this module lays them out for the table, pivots and figures. One row per job
of the chosen run. A job recorded as ``cached`` (its key was
already done at the same code version) shows the numbers of the job it points
to, so a re-run's report is complete without re-measuring anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from segbench.evidence import Evidence
from segbench.store import reads
from segbench.store.db import Database
from segbench.store.liveness import UNFINISHED
from segbench.store.reads import MetricRecord, RunRecord, SampleImage

META_COLUMNS = (
    "job_id",
    "source_id",
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
    """The chosen run and its jobs: metadata, ``factor:<name>`` columns, one column per metric.

    ``source_id`` is the job holding a row's numbers (itself, or the job a
    ``cached`` one points at); curves and samples are keyed by it.
    """

    run: RunInfo
    jobs: pd.DataFrame
    #: (job_id, metric) → the recorded metric (unit, samples, extra), for captions, notes and figures
    details: dict[tuple[int, str], MetricRecord]
    #: job_id → the per-image evidence of its evaluation (jobs recorded with it)
    evidence: dict[int, Evidence] = field(default_factory=dict)
    #: source job id → its training-loss curve (steps, values); loaded with ``figures=True``
    curves: dict[int, tuple[list[float], list[float]]] = field(default_factory=dict)
    #: source job id → its stored sample predictions; loaded with ``figures=True``
    samples: dict[int, list[SampleImage]] = field(default_factory=dict)

    def factor_names(self) -> list[str]:
        return [c[len(FACTOR_PREFIX) :] for c in self.jobs.columns if c.startswith(FACTOR_PREFIX)]


def incomplete_note(run: RunRecord, statuses: list[str], gone: str | None) -> str | None:
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


def load_report_data(
    db: Database, suite: str | None = None, run: str | int | None = None, *, figures: bool = False
) -> ReportData:
    """The run's jobs with their numbers; ``figures`` also loads the loss curves and sample images."""
    with db.sessions() as session:
        chosen = reads.find_run(session, suite, run)
        jobs = reads.jobs_of_runs(session, [chosen.id])
        sources = {job.id: reads.source_of(session, job) for job in jobs}
        source_ids = {job: src.id for job, src in sources.items()}
        by_job = reads.metrics(session, set(source_ids.values()))
        evidence = reads.evidence(session, source_ids)
        curves = reads.curves(session, set(source_ids.values()), "loss") if figures else {}
        samples = reads.sample_images(session, set(source_ids.values())) if figures else {}
    records = []
    details: dict[tuple[int, str], MetricRecord] = {}
    for job in jobs:
        src = sources[job.id]
        status = src.status if job.status == "cached" else job.status
        if chosen.gone and status in UNFINISHED:
            status = "interrupted"  # its driver is gone: nothing will finish it
        rec: dict[str, Any] = {
            "job_id": job.id,
            "source_id": src.id,
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
        for key, value in job.factors.items():
            rec[FACTOR_PREFIX + key] = _hashable(value)
        for name, m in by_job.get(src.id, {}).items():
            rec[name] = m.value
            details[(job.id, name)] = m
        records.append(rec)
    info = RunInfo(
        id=chosen.id,
        suite_name=chosen.suite_name,
        suite_text=chosen.suite_text,
        status="interrupted" if chosen.gone else chosen.status,
        started_at=chosen.started_at,
        segbench_commit=chosen.segbench_commit,
        segbench_dirty=chosen.segbench_dirty,
        suite_commit=chosen.suite_commit,
        suite_dirty=chosen.suite_dirty,
        host=chosen.host,
        incomplete=incomplete_note(chosen, [r["status"] for r in records], chosen.gone),
    )
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame(columns=list(META_COLUMNS))
    return ReportData(info, frame, details, evidence, curves, samples)


def _hashable(value: Any) -> Any:
    """Lists become tuples so factor values can be grouped on."""
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value
