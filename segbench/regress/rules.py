"""Which decision applies to which metric, with which threshold.

A metric is one of four kinds (each metric's kind and direction are in
:mod:`segbench.metrics`, the table every part reads):

* ``accuracy`` (mIoU, pixel accuracy, losses, anything unknown): hardware-
  independent single measurements; percentage metrics change by more than
  0.5 points (stored as fractions: 0.005), other values by more than 1 %. Where
  both sides recorded per-image evidence on the same images (every metric of
  :mod:`segbench.evidence`: mIoU, pixel / mean accuracy, F1, f.w. IoU, trimap,
  foreground), the move must also be significant under a paired bootstrap over
  the images; else it is *noisy*.
* ``complexity`` (params, FLOPs): exact properties of the code; any
  difference counts, and fewer is better.
* ``timing`` (latency, throughput, train/eval speed): compared only on the
  same hardware, on their *rounds* (each round a fresh process): a change
  must exceed a factor (5 %) with its whole interval beyond it. Rounds that
  took turns burst by burst in the same lockstep sweeps (``run --at``) are
  compared pairwise, sweep by sweep; rounds measured apart are compared as
  two samples, and the change must also clear the between-run noise of
  earlier runs where the history has it (:mod:`segbench.regress.rounds`,
  :mod:`segbench.regress.noise`); with too few of either and no history it
  is never more than *noisy*. Throughput is images over the median
  latency, so the latency rounds decide it. The p90 is a tail statistic that
  one slow iteration moves, so it is never more than *noisy*; as are the
  single-shot stage timings (train and eval speed), which have no samples.
* ``memory`` (peak tensor bytes; :mod:`segbench.measure.memory`): compared only
  on the same hardware; the factor alone decides, since a peak of tensor
  memory is one deterministic number, not a noisy sample. The CPU process's
  RSS growth (``peak_rss_bytes``) moves with allocator state, so it is
  recorded but never judged.

Thresholds are written the way a user thinks of them (``mIoU:-0.5`` is half an
mIoU point, ``latency:+5%`` is five per cent) and converted here to the raw
units the database stores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from segbench.errors import UserError, did_you_mean
from segbench.evidence import source_array
from segbench.metrics import ALIASES, METRICS, Kind, canonical
from segbench.metrics import metric as metric_of
from segbench.regress.rounds import Noise, RoundVerdict, decide_rounds, min_rounds, min_sweeps
from segbench.regress.stats import (
    DEFAULT_ALPHA,
    Decision,
    Threshold,
    Verdict,
    paired_decision,
    relative_change,
    threshold_decision,
)

DEFAULT_FACTOR = 0.05
#: Half an mIoU point, in display units (percentage points).
DEFAULT_ACCURACY_POINTS = 0.5
DEFAULT_OTHER_RELATIVE = 0.01


@dataclass(frozen=True)
class Rule:
    """How one metric is compared; thresholds are in the metric's raw (stored) units."""

    metric: str
    kind: Kind
    threshold: Threshold
    higher_is_better: bool
    #: for timings: the metric whose recorded samples decide significance (None: its own)
    samples_from: str | None = None

    @property
    def hardware_bound(self) -> bool:
        """Timings and memory depend on the machine; accuracy and complexity do not."""
        return self.kind in (Kind.timing, Kind.memory)

    def decide(
        self,
        base: float,
        head: float,
        base_samples: Sequence[float] | None = None,
        head_samples: Sequence[float] | None = None,
        *,
        alpha: float = DEFAULT_ALPHA,
        paired: tuple[float | None, str] | None = None,
    ) -> Decision:
        """The verdict; ``paired`` is an accuracy's paired bootstrap ``(p or None, note)`` where one applies.

        A timing's samples count as one round here (never enough to decide);
        :meth:`decide_timing` takes its rounds.
        """
        if self.kind is Kind.accuracy and paired is not None:
            p, note = paired
            return paired_decision(
                base, head, p, self.threshold, higher_is_better=self.higher_is_better, alpha=alpha, note=note
            )
        if self.kind is Kind.timing:
            rounds = ([base_samples], [head_samples]) if base_samples and head_samples else (None, None)
            return self.decide_timing(base, head, *rounds, alpha=alpha).decision
        return threshold_decision(base, head, self.threshold, higher_is_better=self.higher_is_better)

    def decide_timing(
        self,
        base: float,
        head: float,
        base_rounds: Sequence[Sequence[float]] | None,
        head_rounds: Sequence[Sequence[float]] | None,
        *,
        alpha: float = DEFAULT_ALPHA,
        noise: Noise | None = None,
        base_sweeps: Mapping[str, Sequence[float]] | None = None,
        head_sweeps: Mapping[str, Sequence[float]] | None = None,
    ) -> RoundVerdict:
        """A timing's verdict and levels from its rounds (the rounds of ``samples_from``), paired where
        they took turns in lockstep sweeps, else with the history's noise."""
        inverse = self.samples_from is not None and self.samples_from != self.metric
        found = decide_rounds(
            base_rounds,
            head_rounds,
            self.threshold,
            higher_is_better=self.higher_is_better,
            inverse=inverse,
            base_value=base,
            alpha=alpha,
            noise=noise,
            base_sweeps=base_sweeps,
            head_sweeps=head_sweeps,
        )
        if found is not None:
            return found
        if not self.threshold.exceeded(base, head):
            return RoundVerdict(Decision(Verdict.unchanged), base, head)
        return RoundVerdict(
            Decision(Verdict.noisy, note="no repeated samples that could confirm the change"), base, head
        )

    def format_value(self, value: float | None) -> str:
        return "–" if value is None else metric_of(self.metric).show(value)

    def format_change(self, base: float, head: float) -> str:
        """Relative for relative thresholds and exact counts, else a difference in display units."""
        if self.threshold.relative or self.kind is Kind.complexity:
            change = relative_change(base, head)
            return "new" if math.isinf(change) else f"{change * 100:+.1f}%"
        return metric_of(self.metric).show_signed(head - base) + (" pts" if _is_percent(self.metric) else "")

    def describe_threshold(self, alpha: float = DEFAULT_ALPHA) -> str:
        col = metric_of(self.metric)
        if self.threshold.relative:
            text = f"±{self.threshold.amount * 100:g}%"
        elif self.threshold.amount == 0:
            text = "exact"
        else:
            unit = " pts" if _is_percent(self.metric) else ""
            text = f"±{self.threshold.amount * col.scale:g}{unit}"
        if self.kind is Kind.timing:
            text += (
                f" with its whole {1 - alpha:.0%} interval beyond it: over ≥ {min_sweeps(alpha)} shared "
                f"lockstep sweeps, else over ≥ {min_rounds(alpha)} rounds a side (fresh processes) and "
                "clear of history's between-run noise"
            )
        if self.paired:
            text += f" and paired bootstrap p < {alpha:g} where both sides have per-image evidence"
        return text

    @property
    def paired(self) -> bool:
        """An accuracy that per-image evidence can test (recomputable from the counts)."""
        return self.kind is Kind.accuracy and source_array(self.metric) is not None


def _is_percent(name: str) -> bool:
    return metric_of(name).percent


def default_rule(name: str, factor: float = DEFAULT_FACTOR) -> Rule:
    """The rule a metric gets when the user says nothing about it (its kind and direction: segbench.metrics)."""
    col = metric_of(name)
    if col.kind is Kind.timing:
        return Rule(name, Kind.timing, Threshold(factor, True), col.higher_is_better, col.samples_from)
    if col.kind is Kind.memory:
        return Rule(name, Kind.memory, Threshold(factor, True), col.higher_is_better)
    if col.kind is Kind.complexity:
        return Rule(name, Kind.complexity, Threshold(0.0, False), col.higher_is_better)
    if col.percent:
        threshold = Threshold(DEFAULT_ACCURACY_POINTS / col.scale, False)
    else:
        threshold = Threshold(DEFAULT_OTHER_RELATIVE, True)
    return Rule(name, Kind.accuracy, threshold, col.higher_is_better)


@dataclass(frozen=True)
class ThresholdSpec:
    """One ``name:±amount[%]`` item of ``--threshold`` / ``--fail-on``, before name resolution."""

    name: str
    sign: str  # "+", "-" or "" (either way)
    amount: float
    relative: bool


_SPEC = re.compile(
    r"^\s*(?P<name>[^:=\s]+)\s*[:=]\s*(?P<sign>[+-]?)(?P<num>\d+(\.\d*)?|\.\d+)\s*(?P<pct>%?)\s*$"
)


def parse_threshold_specs(text: str, option: str) -> list[ThresholdSpec]:
    """Parse ``"latency:+5%,mIoU:-0.5"``: a percentage is relative, a bare number is in display units."""
    specs: list[ThresholdSpec] = []
    for item in (part for part in text.split(",") if part.strip()):
        match = _SPEC.match(item)
        if match is None:
            raise UserError(
                f"{option} '{item.strip()}': expected METRIC:AMOUNT like 'mIoU:-0.5' (points) "
                "or 'latency:+5%' (per cent)"
            )
        specs.append(
            ThresholdSpec(
                match["name"],
                match["sign"],
                float(match["num"]) / (100 if match["pct"] else 1),
                bool(match["pct"]),
            )
        )
    if not specs:
        raise UserError(f"{option}: no thresholds given (e.g. 'latency:+5%,mIoU:-0.5')")
    return specs


def resolve_metric(name: str, available: Collection[str], option: str = "--metric") -> str:
    """A metric name as stored: exact, an alias (``latency``), or a case-insensitive match (``miou``)."""
    found = canonical(name, available)
    if found is not None:
        return found
    known = set(available) | set(METRICS)
    raise UserError(
        f"{option} '{name}': no such metric{did_you_mean(name, sorted(known | set(ALIASES)))}; "
        f"recorded here: {', '.join(sorted(available)) or '(none)'}"
    )


@dataclass(frozen=True)
class RuleBook:
    """Default rules, a timing factor, a significance level, and per-metric threshold overrides."""

    factor: float = DEFAULT_FACTOR
    alpha: float = DEFAULT_ALPHA
    overrides: Mapping[str, Threshold] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.factor < 0:
            raise UserError(f"--factor {self.factor}: must be ≥ 0 (0.05 = five per cent)")
        if not 0 < self.alpha < 1:
            raise UserError(f"--alpha {self.alpha}: must be between 0 and 1 (e.g. 0.05)")

    def rule(self, metric: str) -> Rule:
        rule = default_rule(metric, self.factor)
        override = self.overrides.get(metric)
        return replace(rule, threshold=override) if override is not None else rule

    def with_specs(self, specs: Sequence[ThresholdSpec], available: Collection[str], option: str) -> RuleBook:
        """These thresholds applied on top; a sign that contradicts the metric's direction is an error."""
        overrides = dict(self.overrides)
        for spec in specs:
            metric = resolve_metric(spec.name, available, option)
            rule = default_rule(metric, self.factor)
            if spec.sign:
                worse = "-" if rule.higher_is_better else "+"
                if spec.sign != worse:
                    better = "higher" if rule.higher_is_better else "lower"
                    raise UserError(
                        f"{option} '{spec.name}:{spec.sign}…': {better} {metric} is better, so a regression "
                        f"is a change of sign '{worse}' (write {spec.name}:{worse}…)"
                    )
            amount = spec.amount if spec.relative else spec.amount / metric_of(metric).scale
            overrides[metric] = Threshold(amount, spec.relative)
        return replace(self, overrides=overrides)
