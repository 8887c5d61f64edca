"""The results at one revision: which runs count, and the latest numbers per job.

A revision the user names (``main``, ``v1.2``, ``HEAD~1``, a hash, or a run
id) becomes a :class:`Target`; :func:`load_snapshot` collects the runs
recorded at it and keeps, per ``job_key`` and hardware, the latest *done*
result (a ``cached`` job stands for the job it points at). Runs measured on a
dirty tree are left out of a baseline unless the user asks for them: a number
measured on uncommitted code belongs to no commit.

Which dirty flag: a run records the state of two repositories, segbench's and
the suite's. The one that matters is the one the revision was resolved in (the
suite's, whose import-path models are what changes between a user's commits);
a run chosen by id is judged by its suite repository when it has one.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from segbench.errors import UserError, did_you_mean
from segbench.evidence import Evidence
from segbench.regress import gitrev
from segbench.store import reads
from segbench.store.reads import JobRecord, MetricRecord, RoundRecord, RunRecord

_HEX = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass(frozen=True)
class Target:
    """A resolved revision: one run, or a commit (a full hash, or a hash prefix known only to the DB)."""

    text: str
    run_id: int | None = None
    commit: str | None = None

    def describe(self) -> str:
        if self.run_id is not None:
            return f"run {self.run_id}"
        assert self.commit is not None
        short = self.commit[:10]
        return short if self.commit.startswith(self.text) else f"{self.text} ({short})"


def resolve_target(session: Session, text: str, repo: Path | None) -> Target:
    """A run id if ``text`` is the id of a recorded run, else a git revision in ``repo``.

    A hash that git does not know (results merged from another clone) still
    names the runs recorded at it.
    """
    text = text.strip()
    if not text:
        raise UserError("an empty revision: name a commit, branch, tag or run id")
    if text.isdigit() and reads.run(session, int(text)) is not None:
        return Target(text, run_id=int(text))
    if repo is not None:
        sha = gitrev.resolve_commit(repo, text)
        if sha is not None:
            return Target(text, commit=sha)
    if _HEX.match(text.lower()) and reads.runs_at_prefix(session, text.lower()):
        return Target(text, commit=text.lower())
    where = (
        f"a revision in {repo}" if repo is not None else "a revision (not inside a git repository: --repo)"
    )
    hint = did_you_mean(text, gitrev.ref_names(repo)) if repo is not None else ""
    raise UserError(
        f"'{text}' is neither a run id in this database (see `segbench list runs`) nor {where}{hint}"
    )


@dataclass(frozen=True)
class Measurement:
    """A metric's headline value and, where it was measured repeatedly, its samples."""

    value: float | None
    samples: tuple[float, ...] | None = None
    #: timings: the samples of every round, round 0 (``samples``) first (:mod:`segbench.regress.retime`)
    rounds: tuple[tuple[float, ...], ...] | None = None
    #: timings: per lockstep sweep (its id), the median of each burst in order
    sweeps: Mapping[str, tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedJob:
    """One job's numbers as they count for a revision."""

    job_key: str
    label: str
    model: str
    model_label: str
    suite: str
    #: the run that reported the result (for a cached job: the later run)
    run_id: int
    #: the job that holds the numbers
    job_id: int
    hardware: str | None
    #: GPU name or CPU model, for people; ``hardware`` is the comparable key
    hardware_name: str | None
    commit: str | None
    dirty: bool
    metrics: Mapping[str, Measurement]
    #: the per-image evidence of its evaluation (None: recorded without, or no eval stage)
    evidence: Evidence | None = None


@dataclass(frozen=True)
class RunRef:
    id: int
    commit: str | None
    dirty: bool
    #: the other repository's tree was dirty (provenance only)
    other_dirty: bool


@dataclass(frozen=True)
class Snapshot:
    """The results at one :class:`Target`."""

    target: Target
    runs: tuple[RunRef, ...]
    #: per job_key, one result per hardware key, latest first
    jobs: Mapping[str, tuple[RecordedJob, ...]]
    skipped_dirty: tuple[int, ...] = field(default=())

    def latest(self, job_key: str) -> RecordedJob:
        return self.jobs[job_key][0]

    def on(self, job_key: str, hardware: str | None) -> RecordedJob | None:
        return next((j for j in self.jobs.get(job_key, ()) if j.hardware == hardware), None)

    @property
    def dirty(self) -> bool:
        return any(r.dirty for r in self.runs)

    @property
    def commit(self) -> str | None:
        commits = {r.commit for r in self.runs}
        return commits.pop() if len(commits) == 1 else self.target.commit

    def metric_names(self) -> set[str]:
        return {name for versions in self.jobs.values() for job in versions for name in job.metrics}

    def describe(self) -> str:
        if self.target.run_id is not None:
            text = self.target.describe() + (f" at {self.commit[:10]}" if self.commit else "")
        else:
            runs = ", ".join(str(r.id) for r in self.runs)
            text = f"{self.target.describe()} · run{'s' if len(self.runs) > 1 else ''} {runs}"
        if self.dirty:
            text += " · DIRTY tree"
        return text


def run_ref(run: RunRecord, commit: str | None) -> RunRef:
    """``run`` as seen from the repository of ``commit`` (a hash or prefix; None: the suite's repository)."""
    if run.suite_commit is not None and (commit is None or run.suite_commit.startswith(commit)):
        return RunRef(run.id, run.suite_commit, bool(run.suite_dirty), bool(run.segbench_dirty))
    return RunRef(run.id, run.segbench_commit, bool(run.segbench_dirty), bool(run.suite_dirty))


def load_snapshot(
    session: Session,
    target: Target,
    *,
    suite: str | None = None,
    allow_dirty: bool = True,
    role: str = "revision",
) -> Snapshot:
    """Latest done result per (job_key, hardware) over the runs at ``target``.

    ``allow_dirty=False`` (for a baseline) leaves out runs measured on a dirty
    tree and says so when nothing else is left.
    """
    if target.run_id is not None:
        found = reads.run(session, target.run_id)
        runs = [found] if found is not None else []
    else:
        assert target.commit is not None
        runs = reads.runs_at_prefix(session, target.commit)
    if suite is not None:
        names = sorted({r.suite_name for r in runs})
        runs = [r for r in runs if r.suite_name == suite]
        if not runs and names:
            raise UserError(
                f"{role} {target.describe()}: no runs of suite '{suite}'{did_you_mean(suite, names)}; "
                f"suites recorded there: {', '.join(names)}"
            )
    if not runs:
        raise UserError(
            f"{role} {target.describe()}: no results recorded at this commit; "
            f"run the suite there (`segbench run SUITE --at {target.text}`)"
        )
    refs: list[RunRef] = []
    skipped: list[int] = []
    for run in runs:
        ref = run_ref(run, None if target.run_id is not None else target.commit)
        if ref.dirty and not allow_dirty:
            skipped.append(run.id)
            continue
        refs.append(ref)
    if not refs:
        raise UserError(
            f"{role} {target.describe()}: every run there (run {', '.join(map(str, skipped))}) was measured "
            "on a dirty tree, and uncommitted code is never a baseline; commit and run again, "
            "or pass --allow-dirty to use it anyway"
        )
    jobs = collect_jobs(session, {r.id: r for r in refs}, {r.id: r for r in runs})
    if not jobs:
        raise UserError(
            f"{role} {target.describe()}: run(s) {', '.join(str(r.id) for r in refs)} finished no job "
            "(see `segbench list jobs`)"
        )
    return Snapshot(target, tuple(refs), jobs, tuple(skipped))


def collect_jobs(
    session: Session, refs: Mapping[int, RunRef], runs: Mapping[int, RunRecord]
) -> dict[str, tuple[RecordedJob, ...]]:
    """Per job_key, the latest done result of each hardware key among the runs ``refs``, latest first."""
    chosen: dict[tuple[str, str | None], tuple[JobRecord, JobRecord]] = {}
    for job in reads.jobs_of_runs(session, refs, latest_first=True):
        source = reads.source_of(session, job)
        if source.status != "done":
            continue
        hardware = source.hardware.key if source.hardware is not None else None
        chosen.setdefault((job.job_key, hardware), (job, source))
    source_ids = [source.id for _, source in chosen.values()]
    recorded = reads.metrics(session, source_ids)
    later = reads.timing_rounds(session, source_ids)
    evidence = reads.evidence(session, {i: i for i in source_ids})
    out: dict[str, list[RecordedJob]] = {}
    for (key, hardware), (job, source) in chosen.items():  # insertion order: latest first
        ref = refs[job.run_id]
        out.setdefault(key, []).append(
            RecordedJob(
                job_key=key,
                label=job.label,
                model=job.model,
                model_label=job.model_label,
                suite=runs[job.run_id].suite_name,
                run_id=job.run_id,
                job_id=source.id,
                hardware=hardware,
                hardware_name=source.hardware.name if source.hardware is not None else None,
                commit=ref.commit,
                dirty=ref.dirty,
                metrics={
                    name: _measurement(m, later.get((source.id, name), ()))
                    for name, m in recorded.get(source.id, {}).items()
                },
                evidence=evidence.get(source.id),
            )
        )
    return {key: tuple(versions) for key, versions in out.items()}


def _measurement(m: MetricRecord, later: Sequence[RoundRecord]) -> Measurement:
    """A metric with its samples and, for a timing, every round's samples (round 0 first) and bursts."""
    samples = _numeric(m.samples)
    rounds = (samples or (), *(_numeric(r.samples) or () for r in later)) if samples is not None else None
    sweeps: dict[str, tuple[float, ...]] = {}
    for r in later:
        values = _numeric(r.samples)
        if r.sweep is not None and r.burst and values:
            sweeps[r.sweep] = burst_medians(values, r.burst)
    return Measurement(m.value, samples, rounds, sweeps)


def burst_medians(samples: Sequence[float], burst: int) -> tuple[float, ...]:
    """The median of each burst of ``burst`` consecutive samples (a short last burst is left out)."""
    whole = len(samples) // burst * burst
    return tuple(statistics.median(samples[i : i + burst]) for i in range(0, whole, burst))


def _numeric(samples: Sequence[object] | None) -> tuple[float, ...] | None:
    """Samples as floats; None for vectors with gaps (per-class IoU) or anything non-numeric."""
    if not samples or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in samples):
        return None
    return tuple(float(s) for s in samples)  # type: ignore[arg-type]
