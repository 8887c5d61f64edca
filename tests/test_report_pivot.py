"""Free-form pivot views: grouping, seed means, folded factors, best values, errors, formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from segbench.errors import UserError
from segbench.report.pivot import build_pivot, dimensions, metric_names, pivot_table
from segbench.report.query import ReportData, load_report_data
from tests.report_fixtures import ROWS, build_report_db


def seed_values(metric: str, **factors: object) -> list[float]:
    return [
        numbers[metric]
        for _, row_factors, seeds in ROWS
        if all(row_factors.get(k) == v for k, v in factors.items())
        for numbers in seeds
        if metric in numbers
    ]


def test_names_come_from_the_run(data: ReportData) -> None:
    assert dimensions(data) == [
        "model",
        "dataset",
        "block",
        "variant",
        "seed",
        "width",
        "eval.flip",
        "eval.scales",
    ]
    names = metric_names(data)
    assert {"mIoU", "pixel_acc", "params", "macs", "latency_ms", "trimap_miou@2"} <= set(names)
    assert "per_class_iou" not in names  # a vector, not a scalar


def test_cells_are_means_over_seeds_and_folded_factors(data: ReportData) -> None:
    pivot = build_pivot(data, ["width"], "mIoU")
    assert pivot.row_keys == [(16,), (32,)]
    narrow, wide = pivot.cells[((16,), ())], pivot.cells[((32,), ())]
    expected_narrow = seed_values("mIoU", width=16)
    assert narrow.count == 2 and narrow.mean == pytest.approx(sum(expected_narrow) / 2)
    expected_wide = seed_values("mIoU", width=32)  # three rows, one failed seed without a value
    assert wide.count == len(expected_wide) == 5
    assert wide.mean == pytest.approx(sum(expected_wide) / 5)
    assert wide.best and not narrow.best  # mIoU: higher is better
    # the wide cell mixes flip and multi-scale rows: the caption must say so
    assert pivot.folded == ["block", "seed", "eval.flip", "eval.scales"]
    assert "Also averaged over block, Flip, MS scales" in pivot.caption  # the suite's labels


def test_markdown_with_columns_and_lower_is_better(data: ReportData) -> None:
    text = pivot_table(data, ["eval.scales"], "latency_ms", ["width"])
    lines = text.splitlines()
    assert lines[0] == "### tta_ablation: latency (ms) by MS scales × channels"
    assert lines[2] == "| MS scales | channels=16 | channels=32 |"
    narrow = seed_values("latency_ms", width=16)
    # rows where the block does not set the factor show 'default'; each column bolds its best (lowest)
    # latency, and a column with a single value has nothing to single out
    assert lines[4] == f"| default | {sum(narrow) / 2:.2f} ± 0.04 | **3.40 ± 0.02** |"
    assert lines[6] == "| 0.75,1.0,1.25 | — | 20.54 ± 0.10 |"


def test_seed_as_a_column_shows_each_seed(data: ReportData) -> None:
    pivot = build_pivot(data, ["width", "eval.scales"], "mIoU", ["seed"])
    assert pivot.column_keys == [(0,), (1,)]
    failed = pivot.cells[((32, (0.75, 1.0, 1.25)), (1,))]
    assert failed.count == 0 and failed.mean is None
    assert "seed" not in pivot.folded


def test_csv_and_json_are_tidy_and_raw(data: ReportData) -> None:
    rows = list(csv.DictReader(io.StringIO(pivot_table(data, ["width"], "mIoU", format="csv"))))
    assert [r["width"] for r in rows] == ["16", "32"]
    assert float(rows[0]["mean"]) == pytest.approx(sum(seed_values("mIoU", width=16)) / 2)  # fraction, not %
    assert rows[0]["n"] == "2" and rows[0]["metric"] == "mIoU"
    doc = json.loads(pivot_table(data, ["eval.scales"], "mIoU", format="json"))
    assert doc["metric"] == {"name": "mIoU", "header": "mIoU (%)", "scale": 100.0}
    assert [c["eval.scales"] for c in doc["cells"]] == [None, [1.0], [0.75, 1.0, 1.25]]


def test_metric_name_is_case_insensitive(data: ReportData) -> None:
    assert build_pivot(data, ["width"], "miou").metric.name == "mIoU"


@pytest.mark.parametrize(
    ("rows", "metric", "columns", "message"),
    [
        (
            ["widht"],
            "mIoU",
            None,
            "--pivot: 'widht' is not something this run varies or records (did you mean 'width'?)",
        ),
        (
            ["width"],
            "mIoU",
            ["modle"],
            "--columns: 'modle' is not something this run varies or records (did you mean 'model'?)",
        ),
        (["width"], "mIoUU", None, "--metric: run 1 recorded no metric 'mIoUU' (did you mean 'mIoU'?)"),
        (["width"], "per_class_iou", None, "--metric 'per_class_iou' has no scalar value in run 1"),
        ([], "mIoU", None, "--pivot: name at least one row dimension"),
        (["width"], "mIoU", ["width"], "width named twice"),
    ],
)
def test_bad_names_are_user_errors(
    data: ReportData, rows: list[str], metric: str, columns: list[str] | None, message: str
) -> None:
    with pytest.raises(UserError) as err:
        build_pivot(data, rows, metric, columns)
    assert message in str(err.value)


def test_errors_list_the_valid_names(data: ReportData) -> None:
    with pytest.raises(
        UserError, match="valid: model, dataset, block, variant, seed, width, eval.flip, eval.scales"
    ):
        build_pivot(data, ["architecture"], "mIoU")


def test_html_is_not_a_pivot_format(data: ReportData) -> None:
    with pytest.raises(UserError, match="a --pivot view renders as markdown, latex, csv, json"):
        pivot_table(data, ["width"], "mIoU", format="html")


def test_pivot_on_a_cached_rerun_reads_the_source_numbers(tmp_path: Path) -> None:
    from tests.report_fixtures import add_cached_rerun

    db = build_report_db(tmp_path / "results.db")
    try:
        run = add_cached_rerun(db)
        rerun = load_report_data(db, run=run)
    finally:
        db.close()
    pivot = build_pivot(rerun, ["width"], "mIoU")
    assert pivot.cells[((16,), ())].count == 2
    assert "Run 2," in pivot.caption
