"""The metric table (segbench/metrics.py) is the one identity every part reads.

A real job runs every stage (complexity, latency with memory and batch
throughput, training, evaluation with trimap bands): each metric it records
must be in the table with the unit it was recorded in. ``--metric`` must name
the same metric in ``compare`` and in ``report --pivot``, and a metric's
direction must be the same where the report bolds its best and where a
regression check decides what got worse.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from segbench.config import ReportSettings, load_suite
from segbench.evidence import CONFUSION_METRICS, FOREGROUND_METRICS
from segbench.metrics import METRICS, Kind, canonical, is_known, metric, unit
from segbench.regress.rules import default_rule, resolve_metric
from segbench.report.pivot import build_pivot
from segbench.report.query import ReportData
from segbench.report.table import build_table
from segbench.runner.backend import JobContext
from segbench.runner.pipeline import run_job
from segbench.suite import expand

SUITE = textwrap.dedent(
    """
    name: every_stage
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 4, val_length: 4}
    models:
      - name: "tests.tinymodels:tiny_segnet"
        label: tiny
    stages: [complexity, latency, train, eval]
    train: {iterations: 2, batch_size: 2, aux_weight: null}
    eval: {batch_size: 2, trimap_widths: [1]}
    measure: {input_size: [32, 32], warmup: 0, iters: 3, min_iters: 3, throughput_batch: 2, memory: true}
    """
)


def test_every_metric_the_pipeline_records_is_in_the_table_with_its_unit(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(SUITE)
    (spec,) = expand(load_suite(tmp_path / "suite.yaml"))
    result = run_job(spec, JobContext("cpu", tmp_path / "ckpt"))
    assert result.ok, result.traceback
    recorded = {m.name: m.unit for m in result.metrics}
    # every stage recorded something, so the check below covers them all
    assert {"params", "macs", "latency_ms", "throughput_batch_ips", "peak_memory_bytes"} <= set(recorded)
    assert {"train_seconds", "mIoU", "val_loss", "trimap_miou@1", "eval_images_per_s"} <= set(recorded)
    assert [n for n in recorded if not is_known(n)] == []
    assert {n: u for n, u in recorded.items() if u != unit(n)} == {}


def test_what_evidence_recomputes_is_in_the_table() -> None:
    """The foreground metrics come from two-class datasets only: the table must know them anyway."""
    assert [n for n in (*CONFUSION_METRICS, *FOREGROUND_METRICS) if n not in METRICS] == []
    assert metric("trimap_miou@8").header == "trimap mIoU 8px (%)"


def test_an_unknown_metric_is_shown_raw_and_compared_as_an_accuracy() -> None:
    odd = metric("my_score")
    assert (odd.header, odd.scale, odd.show(0.123456), odd.kind, odd.higher_is_better) == (
        "my_score",
        1.0,
        "0.1235",
        Kind.accuracy,
        True,
    )
    assert not is_known("my_score")


@pytest.mark.parametrize("typed", ["latency", "LATENCY", "latency_ms", "miou", "gflops", "p90"])
def test_metric_names_resolve_the_same_in_compare_and_in_pivot(data: ReportData, typed: str) -> None:
    recorded = [c for c in data.jobs.columns if c in METRICS or is_known(c)]
    available = {*recorded, "latency_p90_ms"}
    jobs = data.jobs.assign(latency_p90_ms=data.jobs["latency_ms"] * 1.1)
    with_p90 = ReportData(data.run, jobs, data.details, data.evidence)
    in_compare = resolve_metric(typed, available)
    assert build_pivot(with_p90, ["block"], typed).metric.name == in_compare == canonical(typed, available)


def test_direction_is_the_same_in_reports_and_in_regressions() -> None:
    for name in [*METRICS, "trimap_miou@2", "my_score"]:
        rule = default_rule(name)
        assert rule.higher_is_better == metric(name).higher_is_better, name
        assert rule.kind is metric(name).kind, name
    # the two that disagreed: fewer trainable / aux parameters are better everywhere
    assert not metric("params_trainable").higher_is_better and not metric("params_aux").higher_is_better


def test_the_table_bolds_the_fewest_trainable_parameters(data: ReportData) -> None:
    jobs = data.jobs.assign(params_trainable=data.jobs["params"])
    table = build_table(
        ReportData(data.run, jobs, data.details, data.evidence), ReportSettings(columns=["params_trainable"])
    )
    cells = {row.index: row.cells["params_trainable"] for row in table.rows()}
    fewest = min(c.value for c in cells.values())
    assert {i for i, c in cells.items() if c.best} == {i for i, c in cells.items() if c.value == fewest}
    assert table.metric_columns[0].header == "trainable params (M)"
