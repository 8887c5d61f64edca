"""The statistics that decide verdicts: Mann-Whitney on known samples, thresholds, noisy vs regressed."""

from __future__ import annotations

import itertools
import math

import pytest

from segbench.errors import UserError
from segbench.regress.rules import (
    Kind,
    RuleBook,
    default_rule,
    parse_threshold_specs,
    resolve_metric,
)
from segbench.regress.stats import (
    Threshold,
    Verdict,
    mann_whitney_p,
    min_p_value,
    relative_change,
    threshold_decision,
    timing_decision,
)
from tests.test_regress_support import samples


def exact_two_sided_p(a: list[float], b: list[float]) -> float:
    """Mann-Whitney by brute force: every way to split the pooled values into groups of |a| and |b|."""
    pooled = a + b
    u_observed = sum(x > y for x in a for y in b)
    mean = len(a) * len(b) / 2
    extreme = total = 0
    for chosen in itertools.combinations(range(len(pooled)), len(a)):
        first = [pooled[i] for i in chosen]
        second = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        u = sum(x > y for x in first for y in second)
        total += 1
        extreme += abs(u - mean) >= abs(u_observed - mean)
    return extreme / total


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]),  # fully separated: 2 / C(10, 5)
        ([1, 3, 5, 7, 9], [2, 4, 6, 8, 10]),  # interleaved
        ([1.0, 2.5, 3.1, 9.0], [2.0, 4.0, 5.5, 6.0, 7.0]),
    ],
)
def test_mann_whitney_matches_exact_enumeration(a: list[float], b: list[float]) -> None:
    assert mann_whitney_p(a, b) == pytest.approx(exact_two_sided_p(a, b))


def test_mann_whitney_known_values_and_degenerate_samples() -> None:
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert mann_whitney_p([1, 3, 5, 7, 9], [2, 4, 6, 8, 10]) == pytest.approx(0.6904761904761905)
    assert mann_whitney_p([4.0] * 5, [4.0] * 5) == 1.0  # nothing to rank
    assert mann_whitney_p([], [1.0]) == 1.0


def test_min_p_value_is_the_fully_separated_split() -> None:
    assert min_p_value(3, 3) == pytest.approx(0.1)  # can never reach 0.05
    assert min_p_value(4, 4) == pytest.approx(2 / 70)
    assert min_p_value(3, 4) == pytest.approx(2 / 35)
    assert min_p_value(1, 1) == 1.0
    assert min_p_value(0, 5) == 1.0
    assert min_p_value(3, 3) == pytest.approx(mann_whitney_p([1, 2, 3], [4, 5, 6]))


FIVE_PERCENT = Threshold(0.05, relative=True)


def test_slower_beyond_factor_and_significant_is_regressed() -> None:
    base, head = samples(10.0), samples(12.0)
    d = timing_decision(10.0, 12.0, base, head, FIVE_PERCENT, higher_is_better=False)
    assert d.verdict is Verdict.regressed
    assert d.p_value is not None and d.p_value < 1e-6


def test_faster_is_improved_and_throughput_direction_is_respected() -> None:
    base, head = samples(10.0), samples(8.0)
    assert (
        timing_decision(10.0, 8.0, base, head, FIVE_PERCENT, higher_is_better=False).verdict
        is Verdict.improved
    )
    # throughput: higher is better, so the same sample shift downwards in images/s is a regression
    assert (
        timing_decision(100.0, 80.0, base, head, FIVE_PERCENT, higher_is_better=True).verdict
        is Verdict.regressed
    )


def test_significant_but_within_factor_is_unchanged() -> None:
    base, head = samples(10.0, spread=0.001), samples(10.3, spread=0.001)
    assert mann_whitney_p(base, head) < 0.001  # real, but only 3 %
    d = timing_decision(10.0, 10.3, base, head, FIVE_PERCENT, higher_is_better=False)
    assert d.verdict is Verdict.unchanged


def test_beyond_factor_but_not_significant_is_noisy_not_regressed() -> None:
    base, head = [5.0, 10, 15, 20, 25, 30], [6.0, 11, 16, 21, 26, 31]
    d = timing_decision(17.5, 18.5, base, head, FIVE_PERCENT, higher_is_better=False)
    assert d.verdict is Verdict.noisy
    assert d.p_value == pytest.approx(0.6991341991341992)
    assert "not significant" in d.note


def test_too_few_samples_are_insufficient_even_when_separated() -> None:
    d = timing_decision(2.0, 5.0, [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], FIVE_PERCENT, higher_is_better=False)
    assert d.verdict is Verdict.noisy
    assert "insufficient" in d.note and d.p_value is None
    d = timing_decision(2.0, 5.0, None, [4.0, 5.0, 6.0], FIVE_PERCENT, higher_is_better=False)
    assert d.verdict is Verdict.noisy and "no repeated samples" in d.note


def test_alpha_decides_significance() -> None:
    a, b = [1.0, 2, 3, 4, 5], [6.0, 7, 8, 9, 10]  # p = 0.0079
    assert (
        timing_decision(3, 8, a, b, FIVE_PERCENT, higher_is_better=False, alpha=0.01).verdict
        is Verdict.regressed
    )
    assert (
        timing_decision(3, 8, a, b, FIVE_PERCENT, higher_is_better=False, alpha=0.005).verdict
        is Verdict.noisy
    )


def test_accuracy_threshold_in_points() -> None:
    rule = default_rule("mIoU")
    assert rule.kind is Kind.accuracy and not rule.hardware_bound
    assert rule.threshold == Threshold(0.005, relative=False)  # 0.5 mIoU points on a fraction
    assert rule.decide(0.700, 0.696).verdict is Verdict.unchanged  # -0.4 pts
    assert rule.decide(0.700, 0.690).verdict is Verdict.regressed  # -1.0 pts
    assert rule.decide(0.700, 0.710).verdict is Verdict.improved
    assert rule.format_change(0.700, 0.690) == "-1.00 pts"
    loss = default_rule("val_loss")
    assert loss.threshold == Threshold(0.01, relative=True) and not loss.higher_is_better
    assert loss.decide(1.00, 1.05).verdict is Verdict.regressed


def test_complexity_is_exact_and_fewer_is_better() -> None:
    for name in ("params", "macs", "params_aux"):
        rule = default_rule(name)
        assert rule.kind is Kind.complexity
        assert rule.decide(1000, 1000).verdict is Verdict.unchanged
        assert rule.decide(1000, 1001).verdict is Verdict.regressed
        assert rule.decide(1000, 999).verdict is Verdict.improved
    assert default_rule("params").format_change(1000, 1500) == "+50.0%"


def test_timing_rules_share_the_latency_samples() -> None:
    assert default_rule("latency_ms").samples_from == "latency_ms"
    assert default_rule("latency_p90_ms").samples_from is None  # a tail: the samples cannot confirm it
    throughput = default_rule("throughput_ips")
    assert throughput.samples_from == "latency_ms" and throughput.higher_is_better
    assert throughput.hardware_bound and default_rule("peak_memory_bytes").hardware_bound
    assert default_rule("peak_memory_bytes").kind is Kind.memory
    assert default_rule("train_seconds").samples_from is None


def test_relative_change_edges() -> None:
    assert relative_change(10, 12) == pytest.approx(0.2)
    assert relative_change(0, 0) == 0
    assert math.isinf(relative_change(0, 1))
    assert default_rule("params").format_change(0, 10) == "new"


def test_fail_on_specs_convert_to_raw_units() -> None:
    specs = parse_threshold_specs("latency:+5%, mIoU:-0.5,params:+0.1", "--fail-on")
    assert [(s.name, s.sign, s.relative) for s in specs] == [
        ("latency", "+", True),
        ("mIoU", "-", False),
        ("params", "+", False),
    ]
    book = RuleBook().with_specs(specs, {"latency_ms", "mIoU", "params"}, "--fail-on")
    assert book.rule("latency_ms").threshold == Threshold(pytest.approx(0.05), True)
    assert book.rule("mIoU").threshold == Threshold(pytest.approx(0.005), False)
    assert book.rule("params").threshold == Threshold(pytest.approx(100_000), False)  # 0.1 M
    assert book.rule("pixel_acc").threshold == Threshold(0.005, False)  # untouched default


def test_fail_on_spec_errors_say_what_is_wrong() -> None:
    with pytest.raises(UserError, match="expected METRIC:AMOUNT"):
        parse_threshold_specs("latency+5%", "--fail-on")
    with pytest.raises(UserError, match="no thresholds"):
        parse_threshold_specs(" , ", "--fail-on")
    with pytest.raises(UserError, match=r"a regression is a change of sign '\+'"):
        RuleBook().with_specs(parse_threshold_specs("latency:-5%", "--fail-on"), {"latency_ms"}, "--fail-on")
    with pytest.raises(UserError, match="did you mean 'mIoU'"):
        RuleBook().with_specs(parse_threshold_specs("mIoUU:-1", "--fail-on"), {"mIoU"}, "--fail-on")


def test_metric_names_resolve_aliases_and_case() -> None:
    assert resolve_metric("latency", set()) == "latency_ms"
    assert resolve_metric("miou", {"mIoU"}) == "mIoU"
    assert resolve_metric("my_score", {"my_score"}) == "my_score"
    with pytest.raises(UserError, match="no such metric"):
        resolve_metric("nonsense", {"mIoU"})


def test_rulebook_rejects_bad_factor_and_alpha() -> None:
    with pytest.raises(UserError, match="--factor"):
        RuleBook(factor=-0.1)
    with pytest.raises(UserError, match="--alpha"):
        RuleBook(alpha=1.5)


def test_threshold_decision_plain() -> None:
    d = threshold_decision(1.0, 1.2, Threshold(0.1, True), higher_is_better=True)
    assert d.verdict is Verdict.improved and d.p_value is None
