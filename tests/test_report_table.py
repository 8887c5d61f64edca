"""How the table chooses its factor columns and its Δ baselines, beyond what the suite names."""

from __future__ import annotations

import pytest

from segbench.config import ReportSettings
from segbench.report.query import ReportData
from segbench.report.render import markdown
from segbench.report.table import build_table


def rows_of(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_a_varied_factor_missing_from_rows_is_shown_when_rows_would_look_alike(data: ReportData) -> None:
    # report.rows names the width only: in the test-time-augmentation block both rows have
    # width 32, and only the scales tell them apart (the flip is the same in both).
    table = build_table(data, ReportSettings(rows=["width"], columns=["mIoU"], baseline={"width": 16}))
    assert [key for key, _ in table.factor_columns] == ["width", "eval.scales"]
    text = markdown(table)
    header, *body = rows_of(text)
    assert header[:2] == ["width", "eval.scales"]
    assert len({tuple(r[:2]) for r in body[1:]}) == len(body) - 1  # the alignment row aside, all differ
    assert "`eval.scales` also varies in this run but not in report.rows" in text


def test_rows_that_already_differ_get_no_extra_column(data: ReportData) -> None:
    table = build_table(data, ReportSettings(rows=["width", "eval.scales"], columns=["mIoU"]))
    assert [key for key, _ in table.factor_columns] == ["width", "eval.scales"]
    assert not [n for n in table.notes if "report.rows" in n]


def test_a_baseline_matching_several_rows_compares_each_row_with_its_own(data: ReportData) -> None:
    settings = ReportSettings(columns=["mIoU"], baseline={"eval.scales": [1.0]})
    single = [r for b in build_table(data, settings).blocks for r in b.rows]
    assert [r.cells["ΔmIoU"].text == "baseline" for r in single] == [False, False, True, False]
    # one match: every row is compared with it, whatever its other factors
    assert all(r.cells["ΔmIoU"].value is not None for r in single)

    # width 32 matches a row in each block; the width-16 row is compared with the one that
    # agrees with it on everything else (no flip, no scales): the channels block's width 32
    table = build_table(data, ReportSettings(columns=["mIoU"], baseline={"width": 32}))
    rows = [r for b in table.blocks for r in b.rows]
    narrow = next(r for r in rows if r.factors["width"] == 16)
    wide = next(r for r in rows if r.factors["width"] == 32 and r.factors.get("eval.flip") is None)
    assert narrow.cells["ΔmIoU"].value == pytest.approx(narrow.cells["mIoU"].value - wide.cells["mIoU"].value)
    assert [r.is_baseline for r in rows] == [False, True, True, True]


def test_a_block_without_named_variants_prints_no_variant_column() -> None:
    from segbench.report.table import Block, Row, Table

    table = Table(
        "t",
        "caption",
        [("variant", "variant"), ("width", "channels")],
        [],
        [],
        [
            Block("grid", [Row({"width": 8}, {}, "done", seeds=1)]),
            Block("named", [Row({"variant": "wide", "width": 16}, {}, "done", seeds=1)]),
        ],
    )
    grid, named = [rows_of(part) for part in markdown(table).split("**named**")]
    assert grid == [["channels"], ["8"]]
    assert named == [["variant", "channels"], ["wide", "16"]]


def test_delta_intervals_in_every_format_and_without_evidence(data: ReportData) -> None:
    import csv
    import io
    import json

    from segbench.bootstrap import paired_delta
    from segbench.report.latex import to_latex
    from segbench.report.render import to_csv, to_json

    settings = ReportSettings(columns=["mIoU"], baseline={"width": 16})
    table = build_table(data, settings)
    rows = [r for b in table.blocks for r in b.rows]
    wide = rows[1]  # width 32 against width 16, two seeds each: a two-level bootstrap
    expected = paired_delta(
        [data.evidence[j].per_image("mIoU") for j in wide.job_ids],
        [data.evidence[j].per_image("mIoU") for j in rows[0].job_ids],
        "mIoU",
    )
    cell = wide.cells["ΔmIoU"]
    assert cell.interval == expected and expected.two_level
    low, high = (f"{v * 100:+.2f}".replace("-", "−") for v in (expected.low, expected.high))
    assert cell.text == f"{cell.value * 100:+.2f} [{low}, {high}]" + ("*" if expected.excludes_zero else "")
    assert f"| {cell.text} |" in markdown(table)
    assert any("paired bootstrap percentile interval over 8 evaluation images" in n for n in table.notes)
    assert cell.text.split(" [")[1].replace("−", "$-$") in to_latex(table)
    (record,) = [
        r
        for r in csv.DictReader(io.StringIO(to_csv(table)))
        if r["width"] == "32" and not r["block"].startswith("test")
    ]
    assert (
        float(record["delta_mIoU_low"]) == expected.low and float(record["delta_mIoU_high"]) == expected.high
    )
    assert float(record["delta_mIoU_p"]) == expected.p_value
    doc = json.loads(to_json(table))
    assert doc["rows"][1]["delta_mIoU_low"] == expected.low and doc["rows"][0]["delta_mIoU_low"] is None

    # resamples: 0 turns intervals off; rows without evidence print a bare Δ and say why
    bare = build_table(data, ReportSettings(columns=["mIoU"], baseline={"width": 16}, resamples=0))
    assert [r for b in bare.blocks for r in b.rows][1].cells["ΔmIoU"].text == f"{cell.value * 100:+.2f}"
    without = ReportData(data.run, data.jobs, data.details, evidence={})
    old = build_table(without, settings)
    assert [r for b in old.blocks for r in b.rows][1].cells["ΔmIoU"].interval is None
    assert any(n.startswith("Δ mIoU (%) without an interval: no per-image evidence") for n in old.notes)
