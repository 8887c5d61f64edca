"""Timing rounds a job gains after its run: ``segbench run --rounds`` and ``--at`` re-time jobs.

The run's writer (:mod:`segbench.store.recorder`) records a job's first
latency; later rounds are added here by the driver of the lockstep sweeps
(:mod:`segbench.regress.retime`), one transaction each, and read back through
:func:`segbench.store.reads.timing_rounds`. Workers never write.
"""

from __future__ import annotations

from sqlalchemy import func, select

from segbench.store.db import Database
from segbench.store.liveness import now
from segbench.store.schema import TimingRound


def add_timing_round(
    db: Database,
    job_id: int,
    metric: str,
    median: float,
    samples: list[float],
    pid: int,
    *,
    sweep: str | None = None,
    burst: int | None = None,
) -> int:
    """Record one more timing round of a job (in one transaction); its number, after the ones it has.

    ``sweep`` and ``burst`` say which lockstep sweep measured it, in bursts of how many calls.

    A (job, metric, round) is unique (the table's constraint): rounds are
    added, never rewritten, so two processes re-timing one job at once cannot
    overwrite each other — the second gets an IntegrityError, not a lost round.
    """
    with db.session() as s:
        have = s.scalar(
            select(func.max(TimingRound.round)).where(
                TimingRound.job_id == job_id, TimingRound.metric == metric
            )
        )
        number = 1 + int(have or 0)
        s.add(
            TimingRound(
                job_id=job_id,
                metric=metric,
                round=number,
                value=median,
                samples=list(samples),
                pid=pid,
                measured_at=now(),
                sweep=sweep,
                burst=burst,
            )
        )
    return number
