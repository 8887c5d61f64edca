"""The decisions: did a number change, and is the change real or noise?

Four kinds of evidence, four rules:

* **exact** numbers (parameters, FLOPs) are properties of the code: any change
  beyond the threshold (0 by default) is a change.
* **single measurements** (mIoU of a deterministic training run) change when
  they move by more than a threshold, in the metric's own units.
* **repeated timings** change only when the move is larger than a factor
  *and* its interval over rounds measured in separate processes lies beyond
  it (:mod:`segbench.regress.rounds`). A large move that the rounds cannot
  confirm is *noisy*, never *regressed*: a CI gate that fails on a busy
  machine's jitter gets switched off.
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
    #: two-sided p-value, where a test gave one (the paired bootstrap of an accuracy)
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


def _direction(base: float, head: float, higher_is_better: bool) -> Verdict:
    better = head > base if higher_is_better else head < base
    return Verdict.improved if better else Verdict.regressed


def threshold_decision(base: float, head: float, threshold: Threshold, *, higher_is_better: bool) -> Decision:
    """A single measurement (or an exact count): changed iff it moved beyond ``threshold``."""
    if not threshold.exceeded(base, head):
        return Decision(Verdict.unchanged)
    return Decision(_direction(base, head, higher_is_better))


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
