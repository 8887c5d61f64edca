"""The decisions: did a number change, and is the change real or noise?

Four kinds of evidence, four rules:

* **exact** numbers (parameters, FLOPs) are properties of the code: any change
  beyond the threshold (0 by default) is a change.
* **single measurements** (mIoU of a deterministic training run) change when
  they move by more than a threshold, in the metric's own units.
* **repeated timings** change only when the move is larger than a factor
  *and* the two sample sets differ significantly under a two-sided
  Mann-Whitney U test, the rule airspeed velocity uses. A large move that the
  samples cannot confirm is *noisy*, never *regressed*: a CI gate that fails on
  a busy machine's jitter gets switched off.
* **accuracy with per-image evidence** (both sides evaluated on the same
  images, each image's counts recorded) changes only when it moves beyond the
  threshold — the smallest effect that matters — *and* a paired bootstrap over
  the images (:mod:`segbench.bootstrap`) finds the difference significant; a
  move the images cannot confirm is *noisy*, as for timings. Without evidence
  on both sides the threshold alone decides, and the verdict says so.

Everything here works on plain floats; :mod:`segbench.regress.rules` decides
which rule a metric gets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

DEFAULT_ALPHA = 0.05


class Verdict(str, Enum):
    """What happened to one metric between BASE and HEAD."""

    improved = "improved"
    regressed = "regressed"
    unchanged = "unchanged"
    #: moved beyond the threshold, but the samples do not show it is real
    noisy = "noisy"
    #: hardware-bound and measured on different machines: not compared
    incomparable = "incomparable"
    #: recorded on one side only
    missing = "missing"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    #: two-sided Mann-Whitney p-value, where samples were tested
    p_value: float | None = None
    #: why, when the verdict alone does not say it
    note: str = ""


@dataclass(frozen=True)
class Threshold:
    """How far a number must move to count: ``amount`` absolute, or a fraction of BASE if ``relative``."""

    amount: float
    relative: bool

    def exceeded(self, base: float, head: float) -> bool:
        if self.relative:
            return abs(relative_change(base, head)) > self.amount
        return abs(head - base) > self.amount


def relative_change(base: float, head: float) -> float:
    """(HEAD - BASE) / |BASE|; ±inf when BASE is 0 and HEAD is not."""
    if base == head:
        return 0.0
    if base == 0:
        return math.copysign(math.inf, head)
    return (head - base) / abs(base)


def min_p_value(n_base: int, n_head: int) -> float:
    """The smallest two-sided p-value the exact Mann-Whitney test can give for these sample sizes.

    It is reached when every HEAD sample lies on the same side of every BASE
    sample: 2 of the C(n+m, n) equally likely orderings. With 3 + 3 samples
    that is 0.1, so no difference can ever be significant at α = 0.05.
    """
    if n_base < 1 or n_head < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_base + n_head, n_base))


def mann_whitney_p(base: Sequence[float], head: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (exact for small untied samples, as scipy decides)."""
    from scipy.stats import mannwhitneyu  # lazy: scipy.stats takes a while to import

    if len(base) < 1 or len(head) < 1:
        return 1.0
    if len(set(base) | set(head)) == 1:
        return 1.0  # every sample equal: nothing to rank, and scipy would warn
    p = float(mannwhitneyu(list(base), list(head), alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p


def _direction(base: float, head: float, higher_is_better: bool) -> Verdict:
    better = head > base if higher_is_better else head < base
    return Verdict.improved if better else Verdict.regressed


def threshold_decision(base: float, head: float, threshold: Threshold, *, higher_is_better: bool) -> Decision:
    """A single measurement (or an exact count): changed iff it moved beyond ``threshold``."""
    if not threshold.exceeded(base, head):
        return Decision(Verdict.unchanged)
    return Decision(_direction(base, head, higher_is_better))


def timing_decision(
    base: float,
    head: float,
    base_samples: Sequence[float] | None,
    head_samples: Sequence[float] | None,
    threshold: Threshold,
    *,
    higher_is_better: bool,
    alpha: float = DEFAULT_ALPHA,
) -> Decision:
    """A timing: changed iff it moved beyond ``threshold`` *and* the samples differ at level ``alpha``.

    ``base``/``head`` are the headline values (median latency, throughput);
    the samples are the repeated measurements they summarise. Without samples,
    or with too few to ever reach ``alpha``, a move beyond the threshold is
    :attr:`Verdict.noisy`.
    """
    if not threshold.exceeded(base, head):
        return Decision(Verdict.unchanged)
    if not base_samples or not head_samples:
        return Decision(Verdict.noisy, note="no repeated samples that could confirm the change")
    n, m = len(base_samples), len(head_samples)
    if min_p_value(n, m) > alpha:
        return Decision(
            Verdict.noisy,
            note=f"{n} + {m} samples can never reach p < {alpha:g} (insufficient samples)",
        )
    p = mann_whitney_p(base_samples, head_samples)
    if p >= alpha:
        return Decision(Verdict.noisy, p_value=p, note=f"not significant (p = {p:.3g} ≥ {alpha:g})")
    return Decision(_direction(base, head, higher_is_better), p_value=p)


def paired_decision(
    base: float,
    head: float,
    p_value: float | None,
    threshold: Threshold,
    *,
    higher_is_better: bool,
    alpha: float = DEFAULT_ALPHA,
    note: str = "",
) -> Decision:
    """An accuracy: changed iff it moved beyond ``threshold`` *and* the paired bootstrap gives p < ``alpha``.

    ``p_value`` is the paired bootstrap's two-sided p over the shared images;
    None means there is no per-image evidence to test (``note`` says why) and
    the threshold alone decides, as it did before segbench kept evidence.
    """
    if not threshold.exceeded(base, head):
        return Decision(Verdict.unchanged)
    if p_value is None:
        return Decision(_direction(base, head, higher_is_better), note=note)
    if p_value >= alpha:
        return Decision(
            Verdict.noisy, p_value=p_value, note=f"not significant (p = {p_value:.3g} ≥ {alpha:g}); {note}"
        )
    return Decision(_direction(base, head, higher_is_better), p_value=p_value, note=note)
