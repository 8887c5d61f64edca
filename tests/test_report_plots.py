"""The report's figures, drawn from a real database: what each shows, when it is left out, files."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import delete

from segbench.report.cells import Row, Table
from segbench.report.plots import (
    accuracy_cost_plot,
    build_plots,
    close,
    loss_plot,
    pareto_front,
    per_class_heatmap,
    sample_predictions,
    to_svg,
    write_plots,
)
from segbench.report.query import load_report_data
from segbench.report.table import build_table, row_label
from segbench.store.db import Database
from segbench.store.schema import Metric, Series
from tests.report_fixtures import add_cached_rerun, build_report_db, sample_png


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    database = build_report_db(tmp_path / "results.db")
    yield database
    database.close()


def test_pareto_front_keeps_rows_nothing_beats() -> None:
    points = [(1.0, 60.0), (5.0, 65.0), (5.0, 64.0), (3.0, 58.0), (7.0, 66.0), (9.0, 66.0)]
    assert pareto_front(points) == [(1.0, 60.0), (5.0, 65.0), (7.0, 66.0)]


def test_rows_map_to_their_jobs_and_cached_jobs_to_their_sources(db: Database) -> None:
    data = load_report_data(db)
    rows = build_table(data).rows()
    assert [r.label for r in rows] == [
        "channels=16",
        "channels=32",
        "channels=32, Flip, MS scales=1.0",
        "channels=32, Flip, MS scales=0.75,1.0,1.25",
    ]
    assert [r.job_ids for r in rows] == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert [r.job_seeds for r in rows] == [[0, 1]] * 4
    run = add_cached_rerun(db)
    rerun = load_report_data(db, run=run, figures=True)
    cached = build_table(rerun).rows()
    assert [r.job_ids for r in cached] == [[9, 10], [11, 12], [13, 14], [15, 16]]
    assert [r.source_ids for r in cached] == [r.job_ids for r in rows]
    samples = sample_predictions(rerun, cached)
    assert [(s.row.index, s.seed, s.name) for s in samples][:2] == [
        (0, 0, "sample_0.png"),
        (0, 0, "sample_1.png"),
    ]
    assert samples[0].png == sample_png(0, 0, 0)


def test_accuracy_cost_has_a_panel_per_recorded_cost(db: Database) -> None:
    data = load_report_data(db)
    rows = build_table(data).rows()
    plot = accuracy_cost_plot(data, rows)
    assert plot is not None
    assert [ax.get_xlabel() for ax in plot.figure.axes] == ["GFLOPs", "params (M)", "latency (ms)"]
    latency = plot.figure.axes[2]
    # row 1 (width 16) is the cheapest and sits on the front at its mean latency and mIoU
    front = [line for line in latency.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata())]
    assert front[0].get_xdata()[0] == pytest.approx((1.92 + 1.97) / 2)
    assert front[0].get_ydata()[0] == pytest.approx((60.12 + 58.94) / 2)
    close([plot])
    with db.session() as s:
        s.execute(delete(Metric).where(Metric.name.in_(["macs", "latency_ms"])))
    data = load_report_data(db)
    plot = accuracy_cost_plot(data, build_table(data).rows())
    assert plot is not None and [ax.get_xlabel() for ax in plot.figure.axes] == ["params (M)"]


def test_accuracy_error_bars_are_the_bootstrap_interval_where_evidence_was_recorded(db: Database) -> None:
    from segbench.bootstrap import value_interval
    from segbench.store.schema import ImageEvidence

    data = load_report_data(db)
    rows = build_table(data).rows()
    plot = accuracy_cost_plot(data, rows)
    assert plot is not None and "bootstrap interval over the evaluation images" in plot.explanation
    first = rows[0]
    interval = value_interval([data.evidence[j].per_image("mIoU") for j in first.job_ids], "mIoU")
    bars = plot.figure.axes[0].collections[0].get_segments()  # the first block's vertical error bars
    low, high = sorted(y for _, y in bars[0])
    assert (low, high) == pytest.approx((interval.low * 100, interval.high * 100))
    close([plot])
    with db.session() as s:
        s.execute(delete(ImageEvidence))
    data = load_report_data(db)
    plot = accuracy_cost_plot(data, build_table(data).rows())
    assert plot is not None and "bars ± std over seeds (no per-image evidence recorded)" in plot.explanation
    close([plot])


def test_heatmap_shows_seed_means_per_class(db: Database) -> None:
    data = load_report_data(db)
    rows = build_table(data).rows()
    plot = per_class_heatmap(data, rows)
    assert plot is not None
    ax = plot.figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "road",
        "water",
        "car",
        "boat",
        "tree",
        "pole",
        "lamp",
    ]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "1. channels=16"
    vectors = [data.details[(j, "per_class_iou")].samples for j in rows[0].job_ids]
    road = sum(v[0] for v in vectors) / len(vectors) * 100
    texts = {(t.get_position()[0], t.get_position()[1]): t.get_text() for t in ax.texts}
    assert texts[(0.5, 0.5)] == f"{road:.0f}"
    assert (6.5, 0.5) not in texts  # "lamp" never occurs: no number, grey cell


def test_rows_sharing_a_training_run_share_one_loss_curve(db: Database) -> None:
    data = load_report_data(db, figures=True)
    plot = loss_plot(data, build_table(data).rows())
    assert plot is not None
    labels = [t.get_text() for t in plot.figure.axes[0].get_legend().get_texts()]
    assert labels == ["1. channels=16", "2, 3. channels=32", "4. channels=32, Flip, MS scales=0.75,1.0,1.25"]


def test_plots_without_numbers_are_left_out(db: Database) -> None:
    with db.session() as s:
        s.execute(delete(Metric).where(Metric.name.like("trimap%")))
        s.execute(delete(Series))
    data = load_report_data(db, figures=True)
    plots = build_plots(data, build_table(data))
    assert [p.slug for p in plots] == ["accuracy_cost", "per_class_iou"]
    close(plots)


def test_svg_is_self_contained_and_ids_do_not_collide(db: Database) -> None:
    data = load_report_data(db, figures=True)
    plots = build_plots(data, build_table(data))
    svgs = [to_svg(p) for p in plots]
    assert all(s.startswith("<svg") and s.endswith("</svg>") for s in svgs)
    assert not any("http" in s or "<metadata" in s for s in svgs)
    again = build_plots(data, build_table(data))
    assert [to_svg(p) for p in again] == svgs  # deterministic: no dates, stable ids
    close(again)
    ids = [re.findall(r'\bid="([^"]+)"', s) for s in svgs]
    every = [i for found in ids for i in found]
    assert len(every) == len(set(every))  # unique within and across the figures of one page
    for svg, found in zip(svgs, ids, strict=True):
        refs = re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', svg)
        assert refs and {a or b for a, b in refs} <= set(found)  # each figure references its own defs
    close(plots)


def test_write_plots_writes_pngs_for_every_figure_and_sample(db: Database, tmp_path: Path) -> None:
    data = load_report_data(db, figures=True)
    written = write_plots(data, build_table(data), tmp_path / "plots")
    names = [p.name for p in written]
    assert names[:4] == ["accuracy_cost.png", "per_class_iou.png", "trimap.png", "loss.png"]
    assert names[4:6] == ["sample_1_seed0_sample_0.png", "sample_1_seed0_sample_1.png"]
    assert len(names) == 4 + 4 * 2
    for path in written[:4]:
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            assert (
                image.format == "PNG"
                and image.width > 300
                and len(image.getcolors(maxcolors=1 << 16) or []) > 20
            )
    assert written[4].read_bytes() == sample_png(0, 0, 0)


def test_rows_map_to_their_jobs_in_table_order_when_report_rows_leaves_factors_out(tmp_path: Path) -> None:
    """``report.rows: [width]`` leaves flip and scales out; the table brings the scales back."""
    from tests.report_fixtures import SUITE_TEXT

    db = build_report_db(
        tmp_path / "results.db", SUITE_TEXT.replace("report:\n", "report:\n  rows: [width]\n")
    )
    try:
        data = load_report_data(db)
        table = build_table(data)
        rows = table.rows()
    finally:
        db.close()
    assert [r.label for r in rows] == [
        "channels=16",
        "channels=32",
        "channels=32, MS scales=1.0",
        "channels=32, MS scales=0.75,1.0,1.25",
    ]
    assert [r.job_ids for r in rows] == [[1, 2], [3, 4], [5, 6], [7, 8]]
    # the mapping agrees with the table's own numbers: row 4 is the multi-scale row with one seed
    assert rows[3].cells["mIoU"].value == pytest.approx(data.jobs.set_index("job_id").at[7, "mIoU"])


def test_a_row_with_every_factor_off_is_named_by_what_it_lacks() -> None:
    table = Table("t", "", [("ppm", "pyramid pooling"), ("flip", "Flip")], [], [], [])
    off = Row({"ppm": False, "flip": False}, {}, "done", seeds=1)
    on = Row({"ppm": True, "flip": False}, {}, "done", seeds=1)
    assert row_label(table, off) == "no pyramid pooling, no Flip"
    assert row_label(table, on) == "pyramid pooling"
