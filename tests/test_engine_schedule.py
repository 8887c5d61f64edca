"""The poly learning-rate schedule with linear warm-up."""

from __future__ import annotations

import pytest

from segbench.engine.schedule import poly_lr


def test_poly_matches_the_papers_formula() -> None:
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(0.01, 99, 100) == pytest.approx(0.01 * 0.01**0.9)
    assert poly_lr(0.01, 30, 100, power=1.0) == pytest.approx(0.007)
    rates = [poly_lr(0.1, i, 20) for i in range(20)]
    assert rates == sorted(rates, reverse=True) and rates[-1] > 0


def test_warmup_ramps_linearly_then_joins_poly() -> None:
    ramp = [poly_lr(0.1, i, 100, warmup_iters=4) for i in range(6)]
    for i in range(4):
        assert ramp[i] == pytest.approx(poly_lr(0.1, i, 100) * (i + 1) / 4)
    assert ramp[4] == poly_lr(0.1, 4, 100) and ramp[5] == poly_lr(0.1, 5, 100)


def test_iteration_outside_the_run_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"iteration 10 is outside \[0, 10\)"):
        poly_lr(0.1, 10, 10)
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        poly_lr(0.1, 0, 0)
