"""The noise floor from history: how much whole runs of one job on one machine have spread before.

conbench keeps a per-benchmark distribution from earlier results (its lookback
z-score); segbench does the same where the database has it. For a job (its
``job_key``) on one hardware key, each earlier *done* result is one run-level
(the geometric mean of its timing rounds' medians,
:func:`segbench.regress.rounds.round_medians`), and the spread of their logs
is the between-run noise σ_runs — a robust one (1.4826 × the median absolute
deviation), so one run caught by a burst of load on a shared machine does not
make every later change look like noise:

* the runs at the BASE commit, when there are at least :data:`MIN_RUNS`
  ("at BASE": identical code measured several times), else
* the latest :data:`LOOKBACK` runs of the job on that machine recorded before
  HEAD's earliest run, at any commit but HEAD's ("lookback"), when there are
  at least :data:`MIN_RUNS`.

Runs on a dirty tree are left out. With less than that there is no floor, and
the verdict says so: the rounds alone must then decide
(:mod:`segbench.regress.rounds`). A real step in the lookback widens σ_runs, so
history can only make a verdict more careful, never flag one by itself.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

from sqlalchemy.orm import Session

from segbench.regress.rounds import Noise, round_medians
from segbench.regress.snapshot import Snapshot, run_ref
from segbench.store import reads

MIN_RUNS = 3
LOOKBACK = 20
#: the timing whose rounds make a run's level
METRIC = "latency_ms"


def load_noise(session: Session, base: Snapshot, head: Snapshot) -> dict[tuple[str, str | None], Noise]:
    """Per (job_key, hardware key) of the jobs both sides share, the history's noise where there is enough."""
    keys = sorted(set(base.jobs) & set(head.jobs))
    if not keys:
        return {}
    head_runs = [r.id for r in head.runs]
    before = min(head_runs) if head_runs else None
    jobs = reads.done_jobs_of_keys(session, keys)
    runs = reads.runs_by_id(session, {j.run_id for j in jobs})
    found: dict[tuple[str, str], list[tuple[int, str | None, int]]] = {}
    for job in jobs:  # newest first
        ref = run_ref(runs[job.run_id], None)
        if job.hardware is None or ref.dirty or ref.commit == head.commit or job.run_id in head_runs:
            continue
        found.setdefault((job.job_key, job.hardware.key), []).append((job.id, ref.commit, job.run_id))
    levels = _levels(session, [job_id for runs in found.values() for job_id, _, _ in runs])
    out: dict[tuple[str, str | None], Noise] = {}
    for (key, hardware), runs in found.items():
        at_base = [levels[j] for j, commit, _ in runs if commit == base.commit and j in levels]
        if len(at_base) >= MIN_RUNS:
            out[(key, hardware)] = Noise(robust_sd(at_base), len(at_base), "at BASE")
            continue
        earlier = [levels[j] for j, _, run in runs if j in levels and (before is None or run < before)]
        earlier = earlier[:LOOKBACK]
        if len(earlier) >= MIN_RUNS:
            out[(key, hardware)] = Noise(robust_sd(earlier), len(earlier), "before HEAD (lookback)")
    return out


def robust_sd(logs: list[float]) -> float:
    """1.4826 × the median absolute deviation: the standard deviation of normal data, robust to outliers."""
    centre = statistics.median(logs)
    return 1.4826 * statistics.median(abs(x - centre) for x in logs)


def _levels(session: Session, job_ids: list[int]) -> Mapping[int, float]:
    """Each job's log level: the mean log of its round medians."""
    recorded = reads.metrics(session, job_ids)
    later = reads.timing_rounds(session, job_ids)
    rounds: dict[int, list[list[float]]] = {}
    for job_id in job_ids:
        measured = recorded.get(job_id, {}).get(METRIC)
        if measured is None:
            continue
        first = [float(x) for x in measured.samples or ()]
        rounds[job_id] = [first] + [[float(x) for x in r.samples] for r in later.get((job_id, METRIC), [])]
    out: dict[int, float] = {}
    for job_id, per_round in rounds.items():
        medians = round_medians(per_round)
        if medians:
            out[job_id] = statistics.fmean(math.log(m) for m in medians)
    return out
