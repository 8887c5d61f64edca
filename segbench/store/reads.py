"""Every read of the results database, returning plain frozen records.

Writes go through :mod:`segbench.store.recorder`; reads come through here, so
the reports, ``list`` / ``show`` and the regression commands never hold an ORM
row (no lazy load after the session closed, no accidental write) and never
repeat a query. Each function takes a session from ``Database.sessions()``
(read-only where the command is) and returns records that outlive it, as
mlflow's store returns entities, one small function per question.

A job recorded as ``cached`` (its key was done at the same code version)
points at the job that holds its numbers: :func:`source_of` follows that link,
and every read of numbers (metrics, evidence, curves, samples) is asked of the
source.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from segbench.errors import UserError, did_you_mean
from segbench.evidence import Evidence
from segbench.jobs import EvidenceValue
from segbench.store.liveness import gone_reason
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

#: SQLite allows a few hundred bound parameters per statement on old builds.
_CHUNK = 400

_R = TypeVar("_R")


@dataclass(frozen=True)
class RunRecord:
    id: int
    uid: str
    suite_name: str
    suite_path: str
    suite_text: str
    status: str
    started_at: datetime
    host: str
    segbench_commit: str | None
    segbench_dirty: bool | None
    suite_commit: str | None
    suite_dirty: bool | None
    torch_version: str | None
    cuda_version: str | None
    cudnn_version: str | None
    environment: Mapping[str, Any]
    #: why a run recorded as running has no live driver (None: it may still be running, or it ended)
    gone: str | None


@dataclass(frozen=True)
class HardwareRecord:
    #: the comparable identity (timings and memory are compared only on one key)
    key: str
    #: GPU name or CPU model, for people
    name: str | None
    identity: Mapping[str, Any]


@dataclass(frozen=True)
class JobRecord:
    id: int
    run_id: int
    job_key: str
    train_key: str
    position: int
    label: str
    status: str
    model: str
    model_label: str
    dataset: str
    dataset_label: str
    block: str | None
    variant: str | None
    seed: int
    factors: Mapping[str, Any]
    config: Mapping[str, Any]
    source_job_id: int | None
    error: str | None
    traceback: str | None
    device: str | None
    stage_seconds: Mapping[str, Any]
    hardware: HardwareRecord | None


@dataclass(frozen=True)
class MetricRecord:
    job_id: int
    stage: str
    name: str
    value: float | None
    unit: str
    samples: tuple[Any, ...] | None
    extra: Mapping[str, Any] | None


@dataclass(frozen=True)
class RoundRecord:
    """One timing round after round 0: its samples in order, and the lockstep sweep that measured it."""

    round: int
    samples: tuple[Any, ...]
    #: None: measured on its own, not taking turns with other revisions
    sweep: str | None
    #: calls per burst in the sweep
    burst: int | None


@dataclass(frozen=True)
class SampleImage:
    """One stored ``image | ground truth | prediction`` PNG of one job."""

    job_id: int
    name: str
    png: bytes


# ---------------------------------------------------------------- runs


def _record(cls: type[_R], row: Base, **derived: Any) -> _R:
    """``cls`` filled field for field from the ORM ``row`` (its columns share the fields' names).

    ``derived`` gives the fields that are not a column as they stand (a JSON
    column read as a default, a related row as its record).
    """
    return cls(
        **{f.name: derived[f.name] if f.name in derived else getattr(row, f.name) for f in fields(cls)}
    )


def _run(run: Run) -> RunRecord:
    return _record(RunRecord, run, environment=run.environment or {}, gone=gone_reason(run))


def run(session: Session, run_id: int) -> RunRecord | None:
    found = session.get(Run, run_id)
    return _run(found) if found is not None else None


def runs(session: Session) -> list[RunRecord]:
    """Every run, oldest first."""
    return [_run(r) for r in session.scalars(select(Run).order_by(Run.id))]


def runs_by_id(session: Session, run_ids: Iterable[int]) -> dict[int, RunRecord]:
    """run id → its record, for the ids that name a run."""
    ids = sorted(set(run_ids))
    out: dict[int, RunRecord] = {}
    for i in range(0, len(ids), _CHUNK):
        for r in session.scalars(select(Run).where(Run.id.in_(ids[i : i + _CHUNK]))):
            out[r.id] = _run(r)
    return out


def find_run(session: Session, suite: str | None, run: str | int | None) -> RunRecord:
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
        return _run(found)
    query = select(Run).order_by(Run.id.desc()).limit(1)
    if suite:
        query = query.where(Run.suite_name == suite)
    latest = session.scalar(query)
    if latest is None:
        if suite:
            names = session.scalars(select(Run.suite_name).distinct()).all()
            raise UserError(f"no runs of suite '{suite}'{did_you_mean(suite, names)} in this database")
        raise UserError("this database has no runs yet: `segbench run SUITE.yaml` records some")
    return _run(latest)


def runs_at(session: Session, commits: Collection[str], suite: str | None = None) -> list[RunRecord]:
    """Runs whose suite or segbench commit is one of ``commits`` (full hashes), oldest first."""
    shas = list(commits)
    found: dict[int, Run] = {}
    for i in range(0, len(shas), _CHUNK):
        chunk = shas[i : i + _CHUNK]
        query = select(Run).where(or_(Run.suite_commit.in_(chunk), Run.segbench_commit.in_(chunk)))
        if suite is not None:
            query = query.where(Run.suite_name == suite)
        found.update((r.id, r) for r in session.scalars(query))
    return [_run(found[k]) for k in sorted(found)]


def runs_at_prefix(session: Session, commit: str) -> list[RunRecord]:
    """Runs whose suite or segbench commit is ``commit`` (a full hash or a prefix), oldest first."""
    if len(commit) == 40:
        cond = or_(Run.suite_commit == commit, Run.segbench_commit == commit)
    else:
        cond = or_(Run.suite_commit.startswith(commit), Run.segbench_commit.startswith(commit))
    return [_run(r) for r in session.scalars(select(Run).where(cond).order_by(Run.id))]


def latest_run_under(session: Session, folder: str) -> int | None:
    """The id of the latest run whose suite file lies under ``folder`` (``run --at``'s worktree)."""
    return session.scalar(
        select(Run.id)
        .where(Run.suite_path.startswith(folder.rstrip(os.sep) + os.sep, autoescape=True))
        .order_by(Run.id.desc())
        .limit(1)
    )


def job_counts(session: Session) -> dict[int, dict[str, int]]:
    """run id → status → how many of its jobs have it."""
    counts: dict[int, dict[str, int]] = {}
    query = select(Job.run_id, Job.status, func.count()).group_by(Job.run_id, Job.status)
    for run_id, status, n in session.execute(query):
        counts.setdefault(run_id, {})[status] = n
    return counts


# ---------------------------------------------------------------- jobs


def job_record(job: Job) -> JobRecord:
    """The plain record of ``job``, read while its session is open (the writer returns these too)."""
    hw: Hardware | None = job.hardware
    return _record(
        JobRecord,
        job,
        factors=job.factors or {},
        config=job.config or {},
        stage_seconds=job.stage_seconds or {},
        hardware=None if hw is None else HardwareRecord(hw.key, hw.gpu_name or hw.cpu_model, hw.identity),
    )


def training_states(session: Session) -> dict[tuple[str, str], set[str]]:
    """Per (code version, training key), the states its jobs are recorded in: what ``segbench gc`` keeps."""
    states: dict[tuple[str, str], set[str]] = {}
    query = select(Run.code_id, Job.train_key, Job.status).join(Job, Job.run_id == Run.id)
    for code_id, train_key, status in session.execute(query):
        states.setdefault((code_id, train_key), set()).add(status)
    return states


def job(session: Session, job_id: int) -> JobRecord | None:
    # ids are positive 64-bit integers: anything else names no job (and would overflow SQLite)
    found = session.get(Job, job_id) if 0 < job_id < 2**63 else None
    return job_record(found) if found is not None else None


def jobs_of_runs(session: Session, run_ids: Iterable[int], *, latest_first: bool = False) -> list[JobRecord]:
    """The jobs of these runs, by position (``latest_first``: newest job first)."""
    order = Job.id.desc() if latest_first else Job.position
    query = select(Job).where(Job.run_id.in_(list(run_ids))).order_by(order)
    return [job_record(j) for j in session.scalars(query)]


def done_jobs_of_keys(session: Session, job_keys: Collection[str]) -> list[JobRecord]:
    """Every *done* job (not a cached pointer) of these job keys, in any run, newest first."""
    keys = sorted(set(job_keys))
    out: list[JobRecord] = []
    for i in range(0, len(keys), _CHUNK):
        query = select(Job).where(Job.job_key.in_(keys[i : i + _CHUNK]), Job.status == "done")
        out.extend(job_record(j) for j in session.scalars(query))
    return sorted(out, key=lambda j: j.id, reverse=True)


def source_of(session: Session, job: JobRecord) -> JobRecord:
    """Follow ``cached`` links to the job that holds the numbers."""
    seen = set()
    while job.status == "cached" and job.source_job_id is not None and job.id not in seen:
        seen.add(job.id)
        nxt = session.get(Job, job.source_job_id)
        if nxt is None:
            break
        job = job_record(nxt)
    return job


# ---------------------------------------------------------------- what a job recorded


def metrics(session: Session, job_ids: Iterable[int]) -> dict[int, dict[str, MetricRecord]]:
    """job id → metric name → its record, in recording order."""
    out: dict[int, dict[str, MetricRecord]] = {}
    ids = list(job_ids)
    for i in range(0, len(ids), _CHUNK):
        query = select(Metric).where(Metric.job_id.in_(ids[i : i + _CHUNK])).order_by(Metric.id)
        for m in session.scalars(query):
            samples = tuple(m.samples) if m.samples is not None else None
            out.setdefault(m.job_id, {})[m.name] = _record(MetricRecord, m, samples=samples)
    return out


def timing_rounds(session: Session, job_ids: Iterable[int]) -> dict[tuple[int, str], list[RoundRecord]]:
    """(job id, metric) → its timing rounds 1, 2, … in order (round 0 is the metric's own samples)."""
    ids = list(job_ids)
    out: dict[tuple[int, str], list[RoundRecord]] = {}
    for i in range(0, len(ids), _CHUNK):
        query = select(TimingRound).where(TimingRound.job_id.in_(ids[i : i + _CHUNK]))
        for r in session.scalars(query.order_by(TimingRound.job_id, TimingRound.round)):
            record = _record(RoundRecord, r, samples=tuple(r.samples or ()))
            out.setdefault((r.job_id, r.metric), []).append(record)
    return out


def timing_round_count(session: Session, job_id: int, metric: str) -> int:
    """How many timing rounds after round 0 a job has for ``metric``."""
    query = select(func.count()).select_from(TimingRound)
    return int(session.scalar(query.where(TimingRound.job_id == job_id, TimingRound.metric == metric)) or 0)


def evidence(session: Session, sources: Mapping[int, int]) -> dict[int, Evidence]:
    """job id → the evidence its source job recorded (``sources``: job id → source job id)."""
    rows = session.scalars(select(ImageEvidence).where(ImageEvidence.job_id.in_(set(sources.values()))))
    by_source = {
        row.job_id: Evidence.decode(row.dataset, row.split, row.images_sha, row.data, row.format)
        for row in rows
    }
    return {job: by_source[src] for job, src in sources.items() if src in by_source}


def evidence_record(session: Session, job_id: int) -> EvidenceValue | None:
    """The per-image evidence ``job_id`` recorded, as recorded (encoded: ``show`` sums it up undecoded)."""
    row = session.scalar(select(ImageEvidence).where(ImageEvidence.job_id == job_id))
    return None if row is None else _record(EvidenceValue, row, arrays=list(row.arrays))


def curves(
    session: Session, job_ids: Collection[int], name: str
) -> dict[int, tuple[list[float], list[float]]]:
    """The ``name`` series (steps, values) of each of ``job_ids`` that recorded one."""
    if not job_ids:
        return {}
    query = select(Series).where(Series.job_id.in_(list(job_ids)), Series.name == name)
    return {
        s.job_id: ([float(x) for x in s.steps], [float(v) for v in s.values]) for s in session.scalars(query)
    }


def sample_images(session: Session, job_ids: Collection[int]) -> dict[int, list[SampleImage]]:
    """job id → its stored PNG sample predictions, by name."""
    if not job_ids:
        return {}
    query = (
        select(Artifact)
        .where(Artifact.job_id.in_(list(job_ids)), Artifact.media_type == "image/png")
        .order_by(Artifact.job_id, Artifact.name)
    )
    out: dict[int, list[SampleImage]] = {}
    for a in session.scalars(query):
        out.setdefault(a.job_id, []).append(SampleImage(a.job_id, a.name, a.data))
    return out
