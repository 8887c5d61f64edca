"""Timing verdicts from rounds: the variation *between* processes decides, not the samples of one.

A timing is recorded in rounds (:mod:`segbench.regress.retime`): round 0 in
the job's run, rounds 1, 2, … each in a fresh process, interleaved between
the revisions of a ``run --at``. Each round is summarised by its median, and
the rounds, not the samples, are the observations.

Why the median and not the minimum (BenchmarkTools' estimator, since load
on a shared CPU only adds time): measured on the 2-core machine under
another helper's training, load mostly lasts *whole rounds* — A/A round
minima of 0.82–1.03 ms when quiet, 1.10–1.99 ms loaded (9 of 20 rounds in
one run, 22 of 32 in another) — so the minimum does not take it out; it only picks, inside a
loaded round, whichever sample happened to fall in a quiet moment (a round
of median 2.60 ms had its minimum at 1.35), which scatters the minima
between processes. On the same 8 + 8 rounds the minima called one of six
A/A pairs *improved* (Δ −23 %, interval [−41 %, −5 %]); the medians called
none, and both flagged the 2× model 4 / 4. What does outvote round-long
load is the number of rounds: ``run --at`` takes 8 by default
(:data:`segbench.regress.retime.AT_ROUNDS`), whose interval is the 14th
smallest to the 14th largest of 64 differences (22 % of the pairs may fall
on the wrong side), where 5 + 5 used the 3rd of 25 (12 %): with 5 rounds
three loaded BASE rounds against two quiet rounds of the 2× model were
enough to make it *noisy*. The decision statistic is thus the same as the
recorded ``latency_ms`` (the median).

The rule, for a metric with a relative threshold ``f`` (5 % by default)
and level ``alpha``:

1. The change is the Hodges–Lehmann shift of the log round medians: the
   median of the ``n·m`` differences log(HEAD round) − log(BASE round). Its
   ``1 − alpha`` interval is the distribution-free one that inverts the exact
   Mann-Whitney test *on the rounds*: from the k-th smallest to the k-th
   largest difference, k the exact critical count (:func:`rank_interval`).
   No normality is assumed, and one round caught by a burst of load moves one
   difference per pair, not the interval.
2. History (:mod:`segbench.regress.noise`): σ_runs is how far whole runs of
   this job on this machine have spread before. With rounds, the change (the
   shift Δ, not the interval's end: the interval already carries the rounds'
   uncertainty, and stacking the floor on it made a clear +83 % [+20 %,
   +205 %] 2× slowdown *noisy* against a 2σ floor of ×1.27 from four loaded
   runs) must also exceed the noise floor ``2 · σ_runs`` in logs (a factor
   ``e^(2σ)`` slower or faster, so throughput and latency agree); with too few rounds for an interval, history alone
   gives one: ``Δ ± t(k−1) · σ_runs · √2`` (two single runs of identical code).
3. *unchanged* when the shift is at most ``f``.
4. *regressed* / *improved* only when the **whole interval** lies beyond
   the threshold on one side: the rounds show, at confidence ``1 − alpha/2``,
   that the change exceeds the smallest one that matters. Under identical code the
   chance of that is below ``alpha/2`` per metric, and far below unless the
   interval is as wide as the threshold.
5. *noisy* otherwise: moved beyond ``f`` but not shown to, and always when the
   rounds are too few for any interval (with ``alpha`` = 0.05 that is fewer
   than 4 a side: 3 + 3 rounds can never exclude chance) and there is no
   history. Within-run samples alone never decide: they do not see the
   ±20 % by which two processes of identical code differ on a shared machine.

Throughput is images over the median latency, so it is decided on the
latency rounds with the sign turned (its log is minus latency's).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
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
    counts = _u_counts(n, m)
    total = math.comb(n + m, n)
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
) -> RoundVerdict | None:
    """The verdict for a timing recorded in rounds (latency samples per round); None without any rounds.

    ``inverse`` is for a metric that is a constant over the latency
    (throughput: batch × 1000 / median); the constant is read from
    ``base_value`` and round 0's median, and the levels and sign follow.
    """
    logs_b = [math.log(m) for m in round_medians(base_rounds)]
    logs_h = [math.log(m) for m in round_medians(head_rounds)]
    if not logs_b or not logs_h:
        return None
    sign = -1.0 if inverse else 1.0
    found = rank_interval(logs_b, logs_h, alpha)
    shift = found[0] if found is not None else statistics.median(logs_h) - statistics.median(logs_b)
    level_b = math.exp(statistics.median(logs_b))
    level_h = level_b * math.exp(shift)
    if inverse:
        scale = (base_value or 1.0) * statistics.median(base_rounds[0]) if base_rounds else 1.0
        base, head = scale / level_b, scale / level_h
    else:
        base, head = level_b, level_h
    delta = sign * shift
    basis = [f"rounds {len(logs_b)}+{len(logs_h)}"]
    interval = (sign * found[1], sign * found[2]) if found is not None else None
    beyond_what = threshold
    if noise is not None:
        basis.append(f"history {noise.runs} runs {noise.where}, between-run sd {_pct(noise.sd)[1:]}")
        if interval is None:  # one run a side: how far two runs of identical code fall apart
            half = _t(noise.runs - 1, alpha) * noise.sd * math.sqrt(2)
            interval = (delta - half, delta + half)
        else:  # the change must also exceed the noise floor, twice the between-run sd (in logs)
            floor = NOISE_FLOOR_SDS * noise.sd
            beyond_what = _Floored(threshold, floor)
            basis.append(f"noise floor ×/÷ {math.exp(floor):.2f}")
    else:
        basis.append("no history (fewer than 3 earlier runs)")
    if interval is not None:
        low_log, high_log = sorted(interval)
        basis.append(f"Δ {_pct(delta)}, {1 - alpha:.0%} interval [{_pct(low_log)}, {_pct(high_log)}]")
    note = "; ".join(basis)
    if not threshold.exceeded(base, head):
        return RoundVerdict(Decision(Verdict.unchanged, note=note), base, head)
    if interval is None:
        why = f"too few rounds to decide (need ≥ {min_rounds(alpha)} per side, or ≥ 3 earlier runs)"
        return RoundVerdict(Decision(Verdict.noisy, note=f"{why}; {note}"), base, head)
    low, high = (base * math.exp(d) for d in (low_log, high_log))
    one_side = all(threshold.exceeded(base, v) for v in (low, high)) and (low - base) * (high - base) > 0
    if one_side and beyond_what.exceeded(base, head):
        worse = (head < base) if higher_is_better else (head > base)
        verdict = Verdict.regressed if worse else Verdict.improved
        return RoundVerdict(Decision(verdict, note=f"interval beyond the threshold; {note}"), base, head)
    why = "the change is within the noise floor" if one_side else "the interval reaches inside the threshold"
    return RoundVerdict(Decision(Verdict.noisy, note=f"{why}; {note}"), base, head)
