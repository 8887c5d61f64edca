"""The HTML report: self-contained, the same table as markdown, and really rendered by Chromium.

The Chromium test opens the page the way a reader does (a ``file://`` URL in a
real headless Chromium, Debian's ``chromium`` package that ``.ci/run``
installs), takes a screenshot, and reads back the DOM and the console: the page
must log nothing and must show its table, its figures and its sample images.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import delete

from segbench.report.html import render_html
from segbench.report.query import load_report_data
from segbench.report.render import markdown
from segbench.report.table import build_table
from segbench.store.db import Database
from segbench.store.schema import Artifact, Metric, Series
from tests.report_fixtures import SUITE_NAME, build_report_db

FIGURES = ["accuracy_cost", "per_class_iou", "trimap", "loss"]


class Page(HTMLParser):
    """Every start tag with its attributes, and the table's rows as cell texts (bold marked **)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._in_table = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table" and attributes.get("class") == "results":
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self._cell = []
        elif self._cell is not None and tag == "strong":
            self._cell.append("**")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif self._cell is not None and tag == "strong":
            self._cell.append("**")
        elif self._cell is not None and tag in ("td", "th"):
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def count(self, tag: str, **attrs: str) -> int:
        return sum(1 for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items()))


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    database = build_report_db(tmp_path / "results.db")
    yield database
    database.close()


def report(db: Database) -> str:
    data = load_report_data(db, figures=True)
    return render_html(data, build_table(data))


def chromium(page: Path, workdir: Path, window: str = "1280,2400") -> tuple[str, str, Path]:
    """Open ``page`` in headless Chromium: (serialised DOM, Chromium's log, screenshot path)."""
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(binary).exists():
        pytest.fail(
            "Chromium is not installed, and the HTML report test needs it: "
            "apt-get update && apt-get install -y chromium (.ci/run does this in CI)"
        )
    shot = workdir / "screenshot.png"
    proc = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={workdir / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            f"--window-size={window}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout, proc.stderr, shot


def console_messages(log: str) -> list[str]:
    """What the page wrote to the console (errors, uncaught exceptions), from Chromium's log."""
    return [line for line in log.splitlines() if re.search(r":CONSOLE[:(]|Uncaught", line)]


def near(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels are within ``tolerance`` of ``colour`` on every channel."""
    return int((np.abs(pixels - np.array(colour)) <= tolerance).all(axis=-1).sum())


@pytest.mark.chromium
def test_report_renders_in_headless_chromium(db: Database, tmp_path: Path) -> None:
    page = tmp_path / "reports" / f"{SUITE_NAME}.html"
    page.parent.mkdir()
    page.write_text(report(db), encoding="utf-8")
    dom, log, shot = chromium(page, tmp_path)

    assert console_messages(log) == []

    rendered = Page(dom)
    assert rendered.count("table", **{"class": "results"}) == 1
    assert len([r for r in rendered.rows if len(r) > 1]) == 1 + 4  # header + the four table rows
    for slug in FIGURES:  # each figure: its section, heading and an inline SVG the browser parsed
        assert f'<section id="{slug}"><h2>' in dom
    assert rendered.count("svg") == len(FIGURES)
    samples = [a for t, a in rendered.tags if t == "img"]
    assert len(samples) == 4 * 2 and all(
        (a.get("src") or "").startswith("data:image/png;base64,") for a in samples
    )

    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        rgb = image.convert("RGB")
    assert len(rgb.getcolors(maxcolors=1 << 20) or []) > 200, "the screenshot is (nearly) blank"
    pixels = np.asarray(rgb, dtype=np.int32)
    assert (pixels != 255).any(axis=-1).mean() > 0.05
    # the figures are drawn, not just present: matplotlib's blue and orange markers and lines
    assert near(pixels, (31, 119, 180)) > 300
    assert near(pixels, (255, 127, 14)) > 100
    # the best values' highlight in the table
    assert near(pixels, (0xE8, 0xF2, 0xE0), tolerance=2) > 1000


@pytest.mark.chromium
def test_console_check_sees_page_errors(tmp_path: Path) -> None:
    """The console check above can fail: a page that throws is caught."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>x</title></head><body><p>x</p>"
        "<script>console.error('boom'); notDefined();</script></body></html>",
        encoding="utf-8",
    )
    _, log, _ = chromium(page, tmp_path, window="400,300")
    messages = console_messages(log)
    assert any('"boom"' in m for m in messages)
    assert any("Uncaught ReferenceError" in m for m in messages)


def test_page_is_self_contained(db: Database) -> None:
    text = report(db)
    assert "http" not in text and "//" not in re.sub(r"data:[^\"']+", "", text)
    page = Page(text)
    assert page.count("script") == 0 and page.count("link", rel="stylesheet") == 0
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:", "#")), f"<{tag} {name}={value!r}>"
    # the section links point at sections of this page
    targets = {a["href"][1:] for t, a in page.tags if t == "a" and a.get("href")}
    assert targets == {"results", *FIGURES, "samples"}
    assert targets <= {a.get("id") for _, a in page.tags}


def test_table_has_the_markdown_content(db: Database) -> None:
    data = load_report_data(db, figures=True)
    table = build_table(data)
    text = render_html(data, table)
    page = Page(text)
    md = markdown(table)
    md_rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in md.splitlines()
        if line.startswith("| ") and not line.startswith("| channels")
    ]
    html_rows = [r for r in page.rows if len(r) > 1]
    assert html_rows[0] == ["#", *table.headers()]
    assert [r[1:] for r in html_rows[1:]] == md_rows  # same cells, same bold, same order
    assert [r[0] for r in html_rows[1:]] == ["1", "2", "3", "4"]
    assert [r for r in page.rows if len(r) == 1] == [["channels"], ["test-time augmentation"]]  # block labels
    assert f"<caption>{table.caption.replace('&', '&amp;')}</caption>" in text
    for note in table.notes:
        assert f"<li>{note}</li>" in text


def test_sections_follow_what_was_recorded(db: Database) -> None:
    with db.session() as s:
        s.execute(delete(Metric).where(Metric.name.like("trimap%") | (Metric.name == "per_class_iou")))
        s.execute(delete(Series))
        s.execute(delete(Artifact))
    page = Page(report(db))
    sections = [a.get("id") for t, a in page.tags if t == "section"]
    assert sections == ["results", "accuracy_cost", "suite"]
    assert page.count("img") == 0
