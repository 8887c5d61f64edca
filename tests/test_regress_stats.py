"""The statistics that decide verdicts: thresholds in users' units, accuracy and complexity decisions.

Timings are decided on their rounds: tests/test_regress_rounds.py.
"""

from __future__ import annotations

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
    relative_change,
    threshold_decision,
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
