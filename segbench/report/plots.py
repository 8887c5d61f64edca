"""The report's figures: accuracy against cost, per-class IoU, trimap curves, training loss.

Each figure is built from the same run the table shows, one mark or line per
table row (seeds averaged), labelled with that row's factors, so a reader can
go from a point in a plot to its line in the table. The HTML report inlines
the figures as SVG; :func:`write_plots` writes them (and the sample
predictions) as PNG files for slides or a paper.

matplotlib is imported inside the functions that draw, and only its
object-oriented API with the Agg canvas is used (never pyplot), so importing
this module is cheap and rendering has no global state or display to need.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from segbench.bootstrap import CONFIDENCE, value_interval
from segbench.evidence import Evidence
from segbench.report.columns import column
from segbench.report.query import FACTOR_PREFIX, ReportData, source_of
from segbench.report.table import Row, Table, format_factor
from segbench.store.db import Database
from segbench.store.schema import Artifact, Job, Series

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: accuracy metrics a cost plot can use, in order of preference
ACCURACY_METRICS = ("mIoU", "fg_iou", "mean_f1", "pixel_acc")
#: the costs accuracy is plotted against, as CGNet's Fig. 1 does with parameters
COST_METRICS = ("macs", "params", "latency_ms")
_TRIMAP = re.compile(r"^trimap_miou@(\d+)$")
_MAX_LABEL = 48


@dataclass(frozen=True)
class RowJobs:
    """A table row with the jobs behind it: report job ids and the jobs holding their curves."""

    index: int
    label: str
    block: str | None
    row: Row
    job_ids: list[int]
    source_ids: list[int]
    seeds: list[int]


@dataclass
class Plot:
    """One figure with the heading and one-line explanation a report prints with it."""

    slug: str
    title: str
    explanation: str
    figure: Figure


@dataclass(frozen=True)
class SamplePrediction:
    """One stored ``image | ground truth | prediction`` PNG of one table row."""

    row: RowJobs
    seed: int
    name: str
    png: bytes


# ---------------------------------------------------------------- rows and labels


def row_label(table: Table, row: Row) -> str:
    """A short name for a row: its non-empty factors (booleans by header alone).

    A row whose factors are all off is named by what it lacks ("no pyramid
    pooling"), so every point and curve has a name a reader can match.
    """
    parts, off = [], []
    for key, header in table.factor_columns:
        value = row.factors.get(key)
        if value is True:
            parts.append(header)
        elif value is False:
            off.append(f"no {header}")
        elif key in ("model", "dataset", "variant") and value:
            parts.append(str(value))
        elif value is not None and value != "":
            parts.append(f"{header}={format_factor(value)}")
    label = ", ".join(parts or off)
    return label if len(label) <= _MAX_LABEL else label[: _MAX_LABEL - 1] + "…"


def table_rows(db: Database, data: ReportData, table: Table) -> list[RowJobs]:
    """Each table row with its jobs, in the table's order.

    A :class:`Row` keeps its factor values but not its jobs, so the jobs are
    matched back by block and by every factor the row shows; rows that still
    look the same take their groups in the order the table made them, and
    labels that repeat across blocks name their block.
    """
    jobs = data.jobs.sort_values("position", kind="stable")
    extra = [c for c in ("model_label", "dataset_label") if jobs[c].nunique() > 1]
    keys = ["block", "variant", *extra, *(c for c in jobs.columns if c.startswith(FACTOR_PREFIX))]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for _, job in jobs.iterrows():
        values = {k: _plain(job[k]) for k in keys}
        record = {**values, "job_id": int(job["job_id"]), "seed": int(job["seed"])}
        groups.setdefault(tuple(repr(values[k]) for k in keys), []).append(record)
    unused = list(groups.values())
    labels = [row_label(table, row) for block in table.blocks for row in block.rows]
    duplicated = {label for label in labels if labels.count(label) > 1}
    out: list[RowJobs] = []
    for block in table.blocks:
        for row in block.rows:
            group = next((g for g in unused if _matches(g[0], block.name, row)), None)
            if group is None:
                raise RuntimeError(
                    f"table row {row.factors} of block {block.name!r} matches no job of the run"
                )
            unused.remove(group)
            label = labels[len(out)] or block.name or f"row {len(out) + 1}"
            if label in duplicated and block.name:
                label = f"{block.name}: {label}"
            out.append(
                RowJobs(
                    index=len(out),
                    label=label,
                    block=block.name,
                    row=row,
                    job_ids=[j["job_id"] for j in group],
                    source_ids=[],
                    seeds=[j["seed"] for j in group],
                )
            )
    return _with_sources(db, out)


def _matches(job: dict[str, Any], block: str | None, row: Row) -> bool:
    if job["block"] != block:
        return False
    for key, value in row.factors.items():
        source = {"model": "model_label", "dataset": "dataset_label", "variant": "variant"}.get(
            key, FACTOR_PREFIX + key
        )
        if _norm(job.get(source)) != _norm(value):
            return False
    return True


def _norm(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _with_sources(db: Database, rows: list[RowJobs]) -> list[RowJobs]:
    """Follow ``cached`` jobs to the jobs that recorded the curves and images."""
    with db.sessions() as session:
        out = []
        for r in rows:
            sources = []
            for job_id in r.job_ids:
                job = session.get(Job, job_id)
                sources.append(source_of(session, job).id if job is not None else job_id)
            out.append(RowJobs(r.index, r.label, r.block, r.row, r.job_ids, sources, r.seeds))
    return out


def _row_mean(data: ReportData, row: RowJobs, metric: str) -> tuple[float, float | None] | None:
    """Mean and sample std over the row's jobs (failed seeds have no value and are left out)."""
    if metric not in data.jobs.columns:
        return None
    frame = data.jobs.set_index("job_id")
    values = [_plain(frame.at[j, metric]) for j in row.job_ids]
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# ---------------------------------------------------------------- figure plumbing


@contextmanager
def _style(slug: str) -> Iterator[None]:
    """Small, clean figures; a fixed SVG id salt, so the same figure always renders the same bytes."""
    import matplotlib as mpl

    with mpl.rc_context(
        {
            "svg.hashsalt": f"segbench-{slug}",
            "svg.fonttype": "path",
            "font.size": 8,
            "axes.titlesize": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.fontsize": 7,
            "legend.frameon": False,
        }
    ):
        yield


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_svg(plot: Plot) -> str:
    """The figure as an ``<svg>`` element to inline in HTML, with nothing that could clash or leak.

    HTML parses inline SVG in its own namespace, so the XML prolog, the
    ``xmlns`` declarations (URLs, though never fetched) and the RDF metadata
    are dropped. matplotlib numbers its element ids per figure (``patch_1``,
    glyph and clip-path ids), so every id and every reference to one is
    prefixed with the figure's slug: several figures in one page never share
    an id, and each still references only its own definitions.
    """
    buf = io.StringIO()
    with _style(plot.slug):
        plot.figure.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    prefix = f"{plot.slug}-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
    return text.strip()


def to_png(plot: Plot, dpi: int = 150) -> bytes:
    buf = io.BytesIO()
    with _style(plot.slug):
        plot.figure.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _colors(count: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def _legend_right(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


# ---------------------------------------------------------------- the figures


def accuracy_metric(data: ReportData) -> str | None:
    """The accuracy a cost plot shows: mIoU where recorded, else the first of its stand-ins."""
    for name in ACCURACY_METRICS:
        if name in data.jobs.columns and data.jobs[name].notna().any():
            return name
    return None


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both lower cost (x) and higher accuracy (y), by cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def accuracy_cost_plot(data: ReportData, rows: list[RowJobs]) -> Plot | None:
    """mIoU against GFLOPs, parameters and latency, one panel per recorded cost, Pareto front drawn."""
    accuracy = accuracy_metric(data)
    if accuracy is None:
        return None
    acc = column(accuracy)
    panels = []
    #: row index → (below, above) the point: its bootstrap interval, else ± std over seeds
    bars: dict[int, tuple[float, float]] = {}
    for cost in COST_METRICS:
        spec = column(cost)
        points = []
        for r in rows:
            y, x = _row_mean(data, r, accuracy), _row_mean(data, r, cost)
            if y is not None and x is not None and x[0] > 0:
                low, high = bars.setdefault(r.index, _accuracy_bar(data, r, accuracy, y))
                points.append((r, x[0] * spec.scale, y[0] * acc.scale, (low * acc.scale, high * acc.scale)))
        if points:
            panels.append((spec, points))
    if not panels:
        return None
    blocks = list(dict.fromkeys(r.block for r in rows))
    colors = dict(zip(blocks, _colors(len(blocks)), strict=True))
    with _style("accuracy_cost"):
        fig = _figure(3.3 * len(panels) + (1.6 if len(blocks) > 1 else 0.0), 3.0)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (spec, points) in zip(axes, panels, strict=True):
            for block in blocks:
                mine = [p for p in points if p[0].block == block]
                if mine:
                    ax.errorbar(
                        [p[1] for p in mine],
                        [p[2] for p in mine],
                        yerr=[[p[3][0] for p in mine], [p[3][1] for p in mine]],
                        fmt="o",
                        color=colors[block],
                        markersize=5,
                        capsize=2,
                        label=block or "rows",
                    )
            front = pareto_front([(p[1], p[2]) for p in points])
            ax.step([x for x, _ in front], [y for _, y in front], where="post", color="0.35", linestyle="--")
            ax.plot([], [], color="0.35", linestyle="--", label="Pareto front")
            for r, x, y, _ in points:
                ax.annotate(f"{r.index + 1}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
            xs = [p[1] for p in points]
            if min(xs) > 0 and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
            ax.set_xlabel(spec.header)
            ax.set_ylabel(acc.header)
            ax.margins(x=0.12, y=0.15)
        if len(blocks) > 1:
            _legend_right(axes[-1])
    names = " / ".join(spec.header for spec, _ in panels)
    resampled = [r.index for r in rows if r.index in bars and _row_evidence(data, r, accuracy) is not None]
    if len(resampled) == len(bars):
        what = (
            f"bars: {CONFIDENCE:.0%} bootstrap interval over the evaluation images (and seeds, where several)"
        )
    elif resampled:
        what = (
            f"bars: {CONFIDENCE:.0%} bootstrap interval over the images where per-image evidence was "
            "recorded, else ± std over seeds"
        )
    else:
        what = "bars ± std over seeds (no per-image evidence recorded)"
    return Plot(
        "accuracy_cost",
        "Accuracy against cost",
        f"{acc.header} against {names}; each point is a table row (numbered in the table, seeds averaged, "
        f"{what}), the dashed line is the Pareto front: no other row is both cheaper and more accurate.",
        fig,
    )


def _row_evidence(data: ReportData, row: RowJobs, metric: str) -> list[Evidence] | None:
    """The per-image evidence of every job that gave ``row`` its ``metric`` (same images), else None."""
    if metric not in data.jobs.columns:
        return None
    frame = data.jobs.set_index("job_id")
    evidence = [data.evidence.get(j) for j in row.job_ids if _plain(frame.at[j, metric]) is not None]
    if not evidence or any(e is None or not e.has(metric) for e in evidence):
        return None
    present = [e for e in evidence if e is not None]
    return present if all(present[0].same_images(e) for e in present) else None


def _accuracy_bar(
    data: ReportData, row: RowJobs, metric: str, mean: tuple[float, float | None]
) -> tuple[float, float]:
    """How far the error bar reaches below and above the row's mean, in stored units."""
    evidence = _row_evidence(data, row, metric)
    if evidence is None:
        return (mean[1] or 0.0, mean[1] or 0.0)
    interval = value_interval([e.per_image(metric) for e in evidence], metric)
    return (max(0.0, mean[0] - interval.low), max(0.0, interval.high - mean[0]))


def per_class_heatmap(data: ReportData, rows: list[RowJobs]) -> Plot | None:
    """Per-class IoU of each row (seeds averaged); blank where a class never occurs."""
    matrix: list[list[float | None]] = []
    shown: list[RowJobs] = []
    classes: list[str] = []
    for r in rows:
        vectors = [
            data.details[(j, "per_class_iou")] for j in r.job_ids if (j, "per_class_iou") in data.details
        ]
        vectors = [v for v in vectors if v.get("samples")]
        if not vectors:
            continue
        names = list((vectors[0].get("extra") or {}).get("classes") or [])
        width = max(len(v["samples"]) for v in vectors)
        if len(names) != width:
            names = [f"class {i}" for i in range(width)]
        classes = classes if len(classes) >= len(names) else names
        means: list[float | None] = []
        for c in range(width):
            values = [
                v["samples"][c] for v in vectors if c < len(v["samples"]) and v["samples"][c] is not None
            ]
            means.append(sum(values) / len(values) * 100.0 if values else None)
        matrix.append(means)
        shown.append(r)
    if not matrix:
        return None
    import numpy as np

    grid = np.full((len(matrix), len(classes)), np.nan)
    for i, means in enumerate(matrix):
        for c, v in enumerate(means):
            if v is not None:
                grid[i, c] = v
    with _style("per_class_iou"):
        from matplotlib import colormaps

        fig = _figure(min(16.0, 2.6 + 0.55 * len(classes)), 1.2 + 0.32 * len(shown))
        ax = fig.subplots()
        cmap = colormaps["viridis"].with_extremes(bad="#eeeeee")
        mesh = ax.pcolormesh(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=100.0)
        ax.set_xticks(
            np.arange(len(classes)) + 0.5, classes, rotation=45 if len(classes) <= 40 else 90, ha="right"
        )
        ax.set_yticks(np.arange(len(shown)) + 0.5, [f"{r.index + 1}. {r.label}" for r in shown])
        ax.invert_yaxis()
        ax.grid(False)
        ax.tick_params(length=0)
        if grid.size <= 600:
            for (i, c), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    color = "white" if v < 60 else "black"
                    ax.text(c + 0.5, i + 0.5, f"{v:.0f}", ha="center", va="center", fontsize=6.5, color=color)
        fig.colorbar(mesh, ax=ax, label="IoU (%)", shrink=0.9)
    return Plot(
        "per_class_iou",
        "Per-class IoU",
        "IoU of every class for every table row (seeds averaged); grey where a class never occurs in the "
        "evaluated images, so its IoU is undefined.",
        fig,
    )


def trimap_plot(data: ReportData, rows: list[RowJobs]) -> Plot | None:
    """mIoU inside a band around object boundaries against the band's width (DeepLab v3+ Fig. 5)."""
    widths = sorted(int(m.group(1)) for c in data.jobs.columns if (m := _TRIMAP.match(c)))
    if not widths:
        return None
    lines = []
    for r in rows:
        points = [(w, _row_mean(data, r, f"trimap_miou@{w}")) for w in widths]
        points = [(w, v[0] * 100.0) for w, v in points if v is not None]
        if points:
            lines.append((r, points))
    if not lines:
        return None
    with _style("trimap"):
        fig = _figure(7.5, 3.2)
        ax = fig.subplots()
        for (r, points), color in zip(lines, _colors(len(lines)), strict=True):
            ax.plot(
                [w for w, _ in points],
                [v for _, v in points],
                "o-",
                color=color,
                label=f"{r.index + 1}. {r.label}",
            )
        ax.set_xticks(widths)
        ax.set_xlabel("trimap band width (px)")
        ax.set_ylabel("mIoU in band (%)")
        _legend_right(ax)
    return Plot(
        "trimap",
        "Accuracy near object boundaries",
        "mIoU counted only inside a band of the given width around object boundaries (the trimap of DeepLab "
        "v3+ Fig. 5): a decoder's gain over bilinear upsampling shows at the narrow bands.",
        fig,
    )


def load_curves(
    db: Database, job_ids: list[int], name: str = "loss"
) -> dict[int, tuple[list[float], list[float]]]:
    """The ``name`` series (steps, values) of each of ``job_ids`` that recorded one."""
    if not job_ids:
        return {}
    with db.sessions() as session:
        found = session.scalars(select(Series).where(Series.job_id.in_(job_ids), Series.name == name)).all()
        return {s.job_id: ([float(x) for x in s.steps], [float(v) for v in s.values]) for s in found}


def loss_plot(db: Database, rows: list[RowJobs]) -> Plot | None:
    """Training loss over iterations per row: the seeds' mean with their min–max range shaded."""
    curves = load_curves(db, [j for r in rows for j in r.source_ids])
    lines = [(r, [curves[j] for j in r.source_ids if j in curves]) for r in rows]
    lines = [(r, c) for r, c in lines if c]
    if not lines:
        return None
    # Rows that share a training run (evaluation-only factors) repeat a curve: draw it once, for all of them.
    shared: dict[
        tuple[tuple[float, ...], ...], list[tuple[RowJobs, list[tuple[list[float], list[float]]]]]
    ] = {}
    for r, runs in lines:
        shared.setdefault(tuple(tuple(v) for _, v in runs), []).append((r, runs))
    with _style("loss"):
        fig = _figure(7.5, 3.2)
        ax = fig.subplots()
        for group, color in zip(shared.values(), _colors(len(shared)), strict=True):
            first, runs = group[0]
            name = f"{', '.join(str(r.index + 1) for r, _ in group)}. {first.label}"
            steps = runs[0][0]
            if all(s == steps for s, _ in runs):
                stacked = list(zip(*(v for _, v in runs), strict=True))
                mean = [sum(col) / len(col) for col in stacked]
                ax.plot(steps, mean, color=color, label=name, linewidth=1.2)
                if len(runs) > 1:
                    low, high = [min(c) for c in stacked], [max(c) for c in stacked]
                    ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
            else:
                for i, (s, v) in enumerate(runs):
                    ax.plot(s, v, color=color, linewidth=1.0, label=name if i == 0 else None)
        ax.set_xlabel("iteration")
        ax.set_ylabel("training loss")
        _legend_right(ax)
    return Plot(
        "loss",
        "Training loss",
        "Training loss per iteration for each table row: the mean over seeds, shaded between the lowest "
        "and highest seed; rows that share a trained network (evaluation-only factors) share one curve.",
        fig,
    )


def load_samples(
    db: Database, rows: list[RowJobs], per_row: int = 3, max_rows: int = 8
) -> list[SamplePrediction]:
    """Each row's stored sample predictions from its first seed that has any, the same images across rows."""
    ids = [j for r in rows[:max_rows] for j in r.source_ids]
    if not ids:
        return []
    with db.sessions() as session:
        found = session.scalars(
            select(Artifact)
            .where(Artifact.job_id.in_(ids), Artifact.media_type == "image/png")
            .order_by(Artifact.job_id, Artifact.name)
        ).all()
        by_job: dict[int, list[tuple[str, bytes]]] = {}
        for a in found:
            by_job.setdefault(a.job_id, []).append((a.name, a.data))
    out = []
    for r in rows[:max_rows]:
        for source, seed in zip(r.source_ids, r.seeds, strict=True):
            if source in by_job:
                out += [SamplePrediction(r, seed, n, d) for n, d in sorted(by_job[source])[:per_row]]
                break
    return out


def build_plots(db: Database, data: ReportData, table: Table) -> tuple[list[RowJobs], list[Plot]]:
    """The table's rows with their jobs, and every figure whose numbers the run recorded."""
    rows = table_rows(db, data, table)
    plots = [
        accuracy_cost_plot(data, rows),
        per_class_heatmap(data, rows),
        trimap_plot(data, rows),
        loss_plot(db, rows),
    ]
    return rows, [p for p in plots if p is not None]


def close(plots: list[Plot]) -> None:
    """Drop the figures' drawing state (large for heatmaps) once they are rendered."""
    for plot in plots:
        plot.figure.clear()


def write_plots(db: Database, data: ReportData, table: Table, out_dir: Path) -> list[Path]:
    """Every figure as ``<slug>.png`` and each sample prediction as ``sample_<row>_seed<s>_<name>``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, plots = build_plots(db, data, table)
    written = []
    for plot in plots:
        path = out_dir / f"{plot.slug}.png"
        path.write_bytes(to_png(plot))
        written.append(path)
    close(plots)
    for sample in load_samples(db, rows):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", sample.name)
        path = out_dir / f"sample_{sample.row.index + 1}_seed{sample.seed}_{stem}"
        path.write_bytes(sample.png)
        written.append(path)
    return written
