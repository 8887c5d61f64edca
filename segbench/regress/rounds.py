"""Timing verdicts from rounds: the variation *between* processes decides, not the samples of one.

A timing is recorded in rounds (:mod:`segbench.regress.retime`): round 0 in
the job's run, rounds 1, 2, … each in a fresh process. Two ways to decide,
the first wherever it applies:

**Paired, over lockstep sweeps.** Rounds measured in the same sweep took
turns burst by burst with the other revisions' workers, so burst ``i`` of
BASE and of HEAD saw the machine in the same state; on the shared machine
that state alone moves a timing by up to 2× within seconds (measured: see
docs/regressions.md, "Why lockstep"), which whole rounds cannot outvote. Per
shared sweep the observation is the median over bursts of log(HEAD burst) −
log(BASE burst) (:func:`lockstep_differences`); the change is their
Hodges–Lehmann estimate (median of the Walsh averages) and its ``1 − alpha``
interval the exact Wilcoxon signed-rank one (:func:`signed_rank_interval`),
which exists from :func:`min_sweeps` (6) sweeps. History is not consulted:
what it measures is mostly the machine's state, which the pairing cancels.

**Unpaired, over rounds** (rounds measured apart: plain runs at different
times, older databases). Each round is summarised by its median (not the
minimum: inside a loaded round the minimum is whichever sample fell in a
quiet moment, so minima scatter between processes more than medians do —
measured, see the docs), and the change is the Hodges–Lehmann shift of the
log round medians with the exact Mann-Whitney interval *on the rounds*
(:func:`rank_interval`). History (:mod:`segbench.regress.noise`) adds a
condition: σ_runs is how far whole runs of this job on this machine have
spread before, and the shift Δ must also exceed the noise floor ``2 · σ_runs``
in logs; with too few rounds for an interval, history alone gives one:
``Δ ± t(k−1) · σ_runs · √2``.

Then, for a metric with a relative threshold ``f`` (5 % by default):
*unchanged* when the change is at most ``f``; *regressed* / *improved* only
when the **whole interval** lies beyond the threshold on one side (under
identical code the chance of that is below ``alpha/2`` per metric); *noisy*
otherwise, and always when there is too little for any interval. Within-run
samples alone never decide.

Throughput is images over the median latency, so it is decided on the
latency rounds with the sign turned (its log is minus latency's).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from segbench.regress.stats import Decision, Threshold, Verdict

#: with rounds and history, a change must exceed this many between-run standard deviations
NOISE_FLOOR_SDS = 2.0


@dataclass(frozen=True)
class Noise:
    """How much whole runs of one job on one machine have spread (log scale), and where that was seen."""

    sd: float
    runs: int
    where: str


@dataclass(frozen=True)
class RoundVerdict:
    decision: Decision
    #: the two levels (geometric means of the round medians) in the metric's own unit
    base: float
    head: float


def min_rounds(alpha: float) -> int:
    """The fewest rounds a side (both sides alike) for which the rank interval exists at ``alpha``."""
    return next(n for n in range(1, 50) if critical_rank(n, n, alpha) > 0)


def round_medians(rounds: Sequence[Sequence[float]] | None) -> list[float]:
    """One median per round, rounds without samples or with non-positive times left out."""
    return [statistics.median(r) for r in rounds or () if r and min(r) > 0]


def _t(df: float, alpha: float) -> float:
    from scipy.stats import t  # lazy: scipy.stats takes a while to import

    return float(t.ppf(1 - alpha / 2, df))


@lru_cache(maxsize=256)
def _u_counts(n: int, m: int) -> tuple[int, ...]:
    """How many of the C(n+m, n) orderings give each Mann-Whitney U = 0 … n·m (exact, no ties)."""
    if n == 0 or m == 0:
        return (1,)
    # U(n, m) = U(n-1, m) + m (the largest value is a BASE one) or U(n, m-1) (a HEAD one)
    first, second = _u_counts(n - 1, m), _u_counts(n, m - 1)
    out = [0] * (n * m + 1)
    for u, c in enumerate(first):
        out[u + m] += c
    for u, c in enumerate(second):
        out[u] += c
    return tuple(out)


def critical_rank(n: int, m: int, alpha: float) -> int:
    """The largest k with P(U < k) ≤ alpha/2 under no difference; 0 when no interval exists."""
    return _lower_critical(_u_counts(n, m), alpha)


def _lower_critical(counts: Sequence[int], alpha: float) -> int:
    """The largest k with P(statistic < k) ≤ alpha/2, from the exact null counts of each value 0, 1, …."""
    total = sum(counts)
    k, below = 0, 0
    while k < len(counts) and below + counts[k] <= alpha / 2 * total:
        below += counts[k]
        k += 1
    return k


def rank_interval(
    base: Sequence[float], head: Sequence[float], alpha: float
) -> tuple[float, float, float] | None:
    """(Hodges–Lehmann shift HEAD − BASE, low, high) at ``1 - alpha``; None when the rounds are too few."""
    diffs = sorted(h - b for h in head for b in base)
    k = critical_rank(len(base), len(head), alpha)
    if k == 0:
        return None
    return statistics.median(diffs), diffs[k - 1], diffs[-k]


@dataclass(frozen=True)
class _Floored:
    """A threshold that a value must also clear by a factor ``e^floor`` either way (slower or faster)."""

    threshold: Threshold
    floor: float

    def exceeded(self, base: float, value: float) -> bool:
        if not self.threshold.exceeded(base, value):
            return False
        return base > 0 and value > 0 and abs(math.log(value / base)) > self.floor


def _pct(log_change: float) -> str:
    return f"{math.expm1(log_change) * 100:+.1f}%"


@lru_cache(maxsize=256)
def _signed_rank_counts(n: int) -> tuple[int, ...]:
    """How many of the 2**n sign patterns give each Wilcoxon signed-rank sum W+ = 0 … n(n+1)/2."""
    counts = [1]
    for rank in range(1, n + 1):  # rank ``rank`` is positive (adds it) or negative (adds nothing)
        grown = counts + [0] * rank
        for w, c in enumerate(counts):
            grown[w + rank] += c
        counts = grown
    return tuple(counts)


def critical_signed_rank(n: int, alpha: float) -> int:
    """The largest k with P(W+ < k) ≤ alpha/2 under a median of zero; 0 when no interval exists."""
    return _lower_critical(_signed_rank_counts(n), alpha)


def min_sweeps(alpha: float) -> int:
    """The fewest lockstep sweeps two revisions must share for the signed-rank interval to exist."""
    return next(n for n in range(1, 50) if critical_signed_rank(n, alpha) > 0)


def signed_rank_interval(diffs: Sequence[float], alpha: float) -> tuple[float, float, float] | None:
    """(Hodges–Lehmann median of the Walsh averages, low, high) at ``1 - alpha``; None when too few."""
    k = critical_signed_rank(len(diffs), alpha)
    if k == 0:
        return None
    walsh = sorted((a + b) / 2 for i, a in enumerate(diffs) for b in diffs[i:])
    return statistics.median(walsh), walsh[k - 1], walsh[-k]


def lockstep_differences(
    base: Mapping[str, Sequence[float]], head: Mapping[str, Sequence[float]]
) -> list[float]:
    """Per sweep both sides took part in: the median over its bursts of log(HEAD burst) − log(BASE burst).

    Burst ``i`` of the two sides ran back to back (within milliseconds), so
    whatever state the machine was in then — a neighbour's load, a frequency
    step — is in both and cancels in the difference; what is left is the
    revisions' difference plus what distinguishes their two processes, which
    the next sweep draws afresh.
    """
    out = []
    for sweep in sorted(set(base) & set(head)):
        pairs = [(b, h) for b, h in zip(base[sweep], head[sweep], strict=False) if b > 0 and h > 0]
        if pairs:
            out.append(statistics.median(math.log(h) - math.log(b) for b, h in pairs))
    return out


def decide_rounds(
    base_rounds: Sequence[Sequence[float]] | None,
    head_rounds: Sequence[Sequence[float]] | None,
    threshold: Threshold,
    *,
    higher_is_better: bool,
    inverse: bool = False,
    base_value: float | None = None,
    alpha: float = 0.05,
    noise: Noise | None = None,
    base_sweeps: Mapping[str, Sequence[float]] | None = None,
    head_sweeps: Mapping[str, Sequence[float]] | None = None,
) -> RoundVerdict | None:
    """The verdict for a timing recorded in rounds (latency samples per round); None without any rounds.

    Where both sides share at least :func:`min_sweeps` lockstep sweeps
    (``*_sweeps``: sweep id → burst medians), the paired bursts decide;
    otherwise the rounds as independent samples, with the history's noise.
    ``inverse`` is for a metric that is a constant over the latency
    (throughput: batch × 1000 / median); the constant is read from
    ``base_value`` and round 0's median, and the levels and sign follow.
    """
    logs_b = [math.log(m) for m in round_medians(base_rounds)]
    logs_h = [math.log(m) for m in round_medians(head_rounds)]
    if not logs_b or not logs_h:
        return None
    sign = -1.0 if inverse else 1.0
    paired = lockstep_differences(base_sweeps or {}, head_sweeps or {})
    beyond_what: Threshold | _Floored = threshold
    lockstep = len(paired) >= min_sweeps(alpha)
    if lockstep:
        found = signed_rank_interval(paired, alpha)
        basis = [
            f"lockstep {len(paired)} sweeps (bursts paired in time, Wilcoxon signed-rank over sweeps)",
            "history not needed: the machine's state cancels within a sweep",
        ]
        noise = None
    else:
        found = rank_interval(logs_b, logs_h, alpha)
        basis = [f"rounds {len(logs_b)}+{len(logs_h)}"]
    shift = found[0] if found is not None else statistics.median(logs_h) - statistics.median(logs_b)
    level_b = math.exp(statistics.median(logs_b))
    level_h = level_b * math.exp(shift)
    if inverse:
        scale = (base_value or 1.0) * statistics.median(base_rounds[0]) if base_rounds else 1.0
        base, head = scale / level_b, scale / level_h
    else:
        base, head = level_b, level_h
    delta = sign * shift
    interval = (sign * found[1], sign * found[2]) if found is not None else None
    if noise is not None:
        basis.append(f"history {noise.runs} runs {noise.where}, between-run sd {_pct(noise.sd)[1:]}")
        if interval is None:  # one run a side: how far two runs of identical code fall apart
            half = _t(noise.runs - 1, alpha) * noise.sd * math.sqrt(2)
            interval = (delta - half, delta + half)
        else:  # the change must also exceed the noise floor, twice the between-run sd (in logs)
            floor = NOISE_FLOOR_SDS * noise.sd
            beyond_what = _Floored(threshold, floor)
            basis.append(f"noise floor ×/÷ {math.exp(floor):.2f}")
    elif not lockstep:
        basis.append("no history (fewer than 3 earlier runs)")
    if interval is not None:
        low_log, high_log = sorted(interval)
        basis.append(f"Δ {_pct(delta)}, {1 - alpha:.0%} interval [{_pct(low_log)}, {_pct(high_log)}]")
    note = "; ".join(basis)
    if not threshold.exceeded(base, head):
        return RoundVerdict(Decision(Verdict.unchanged, note=note), base, head)
    if interval is None:
        why = (
            f"too few rounds to decide (need ≥ {min_rounds(alpha)} per side, ≥ {min_sweeps(alpha)} "
            "lockstep sweeps, or ≥ 3 earlier runs)"
        )
        return RoundVerdict(Decision(Verdict.noisy, note=f"{why}; {note}"), base, head)
    low, high = (base * math.exp(d) for d in (low_log, high_log))
    one_side = all(threshold.exceeded(base, v) for v in (low, high)) and (low - base) * (high - base) > 0
    if one_side and beyond_what.exceeded(base, head):
        worse = (head < base) if higher_is_better else (head > base)
        verdict = Verdict.regressed if worse else Verdict.improved
        return RoundVerdict(Decision(verdict, note=f"interval beyond the threshold; {note}"), base, head)
    why = "the change is within the noise floor" if one_side else "the interval reaches inside the threshold"
    return RoundVerdict(Decision(Verdict.noisy, note=f"{why}; {note}"), base, head)
