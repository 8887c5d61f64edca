"""Hostile labels through the real report: markdown stays a table of plain text, CSV runs no formula."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from pathlib import Path

import pytest

from segbench.report.render import csv_cell, md_cell
from tests.report_fixtures import SUITE_TEXT, build_report_db
from tests.test_spine import segbench

SCRIPT = "<script>alert(1)</script>"
BLOCK = f"tta | {SCRIPT}"
HEADER = '=HYPERLINK("http://evil.example","click")'
CELL = "@SUM(1)|x\ny"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report fixture with a hostile block name, factor label and factor values."""
    path = tmp_path_factory.mktemp("hostile") / "r.db"
    text = SUITE_TEXT.replace("block: test-time augmentation", f"block: '{BLOCK}'").replace(
        "labels: {width: channels,", f"labels: {{width: '{HEADER}',"
    )
    build_report_db(path, text).close()
    with sqlite3.connect(path) as conn:
        conn.execute("update jobs set block = ? where block = 'test-time augmentation'", (BLOCK,))
        width = "select min(id) from jobs where block = 'channels' and json_extract(factors, '$.width') = ?"
        (first,) = conn.execute(width, (16,)).fetchone()  # its other seed stays: the baseline row
        (wide,) = conn.execute(width, (32,)).fetchone()
        conn.execute("update jobs set factors = json_set(factors, '$.width', ?) where id = ?", (CELL, first))
        flip = "update jobs set factors = json_set(factors, '$.\"eval.flip\"', '-0.42') where id = ?"
        conn.execute(flip, (wide,))
    return f"sqlite:///{path}"


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_keeps_the_cells_in_their_columns_and_prints_no_markup(hostile: str, tmp_path: Path) -> None:
    proc = segbench("report", "--db", hostile, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "<script" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    table_lines = [line for line in out.splitlines() if line.startswith("|")]
    assert table_lines and len({_unescaped_pipes(line) for line in table_lines}) == 1, table_lines
    assert "| @SUM(1)\\|x<br>y |" in out  # one cell, one line
    assert "**tta \\| &lt;script&gt;" not in out and "**tta | &lt;script&gt;alert(1)&lt;/script&gt;**" in out
    pivot = segbench("report", "--db", hostile, "--pivot", "width", "--metric", "mIoU", cwd=tmp_path)
    assert pivot.returncode == 0, pivot.stderr
    rows = [line for line in pivot.stdout.splitlines() if line.startswith("|")]
    assert len({_unescaped_pipes(line) for line in rows}) == 1 and "\\|x<br>y" in pivot.stdout, rows


def test_csv_neutralises_formulas_but_keeps_numbers(hostile: str, tmp_path: Path) -> None:
    proc = segbench("report", "--db", hostile, "-f", "csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert "'" + CELL in [row["width"] for row in rows]  # a spreadsheet shows the text, runs nothing
    assert "-0.42" in [row["eval.flip"] for row in rows]  # text that is a plain number: no formula
    deltas = [float(row["delta_latency_ms"]) for row in rows if row["delta_latency_ms"]]
    assert any(d < 0 for d in deltas)  # negative numbers are numbers, unquoted
    assert not [
        cell for row in rows for cell in row.values() if cell and cell[0] in "=+-@\t\r" and not _num(cell)
    ]
    pivot = segbench(
        "report", "--db", hostile, "--pivot", "width", "--metric", "mIoU", "-f", "csv", cwd=tmp_path
    )
    assert "'" + CELL in [row["width"] for row in csv.DictReader(io.StringIO(pivot.stdout))]


def _num(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("-0.42", "-0.42"),
        ("+1e-3", "+1e-3"),
        (-0.42, -0.42),
        ("plain", "plain"),
        (("a", "b"), "a,b"),
        (None, None),
    ],
)
def test_csv_cell(value: object, expected: object) -> None:
    assert csv_cell(value) == expected


def test_md_cell() -> None:
    assert md_cell("a|b") == "a\\|b"
    assert md_cell("<b>&amp;</b> & co") == "&lt;b&gt;&amp;amp;&lt;/b&gt; & co"
    assert md_cell("one\ntwo") == "one<br>two"
