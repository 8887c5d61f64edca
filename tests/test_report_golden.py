"""Golden files: the markdown and LaTeX renderings of a realistic run, byte for byte.

The database is built through the ORM (``tests/report_fixtures.py``), so these
tests pin the whole path a user's ``segbench report`` takes: SQL → ReportData →
Table → text. After an intended change of the output, regenerate the files with
``SEGBENCH_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_report_golden.py`` and
review the diff like code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from segbench.report.latex import to_latex
from segbench.report.pivot import pivot_table
from segbench.report.query import ReportData, load_report_data
from segbench.report.render import markdown
from segbench.report.table import build_table
from tests.report_fixtures import build_report_db

GOLDEN = Path(__file__).with_name("golden")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SEGBENCH_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with SEGBENCH_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from the golden file (SEGBENCH_UPDATE_GOLDEN=1 regenerates it)"


RENDERINGS: dict[str, Callable[[ReportData], str]] = {
    "tta_ablation.md": lambda data: markdown(build_table(data)),
    "tta_ablation.tex": lambda data: to_latex(build_table(data)),
    "tta_ablation_pivot.md": lambda data: pivot_table(data, ["block", "width"], "mIoU", ["eval.flip"]),
    "tta_ablation_pivot.tex": lambda data: pivot_table(
        data, ["model", "dataset"], "latency_ms", ["width"], format="latex"
    ),
}


@pytest.mark.parametrize("name", sorted(RENDERINGS))
def test_rendering_matches_golden_file(data: ReportData, name: str) -> None:
    check_golden(name, RENDERINGS[name](data))


def test_a_noisy_timing_is_marked_not_hidden(tmp_path: Path) -> None:
    from sqlalchemy import select

    from segbench.store.schema import Metric

    db = build_report_db(tmp_path / "results.db")
    try:
        with db.session() as s:
            first = s.scalars(select(Metric).where(Metric.name == "latency_ms").order_by(Metric.id)).first()
            first.extra = {**(first.extra or {}), "noisy": True, "cv": 0.4}
        table = build_table(load_report_data(db))
    finally:
        db.close()
    text = markdown(table)
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert sum("‡" in row for row in rows) == 1  # only the row holding that job
    assert "‡ noisy" in text
    assert r"$^\ddagger$" in to_latex(table)
