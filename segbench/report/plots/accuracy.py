"""Accuracy against cost (CGNet's Fig. 1 with parameters): one point per table row, Pareto front drawn."""

from __future__ import annotations

from segbench.bootstrap import CONFIDENCE, value_interval
from segbench.evidence import Evidence
from segbench.metrics import metric
from segbench.report.cells import Row, present
from segbench.report.plots.figure import Plot, legend_right, new_figure, palette, row_mean, style
from segbench.report.query import ReportData

#: accuracy metrics a cost plot can use, in order of preference
ACCURACY_METRICS = ("mIoU", "fg_iou", "mean_f1", "pixel_acc")
#: the costs accuracy is plotted against, as CGNet's Fig. 1 does with parameters
COST_METRICS = ("macs", "params", "latency_ms")


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


def accuracy_cost_plot(data: ReportData, rows: list[Row]) -> Plot | None:
    """mIoU against GFLOPs, parameters and latency, one panel per recorded cost, Pareto front drawn."""
    accuracy = accuracy_metric(data)
    if accuracy is None:
        return None
    acc = metric(accuracy)
    panels = []
    #: row index → (below, above) the point: its bootstrap interval, else ± std over seeds
    bars: dict[int, tuple[float, float]] = {}
    for cost in COST_METRICS:
        spec = metric(cost)
        points = []
        for r in rows:
            y, x = row_mean(data, r, accuracy), row_mean(data, r, cost)
            if y is not None and x is not None and x[0] > 0:
                low, high = bars.setdefault(r.index, _accuracy_bar(data, r, accuracy, y))
                points.append((r, x[0] * spec.scale, y[0] * acc.scale, (low * acc.scale, high * acc.scale)))
        if points:
            panels.append((spec, points))
    if not panels:
        return None
    blocks = list(dict.fromkeys(r.block for r in rows))
    colors = dict(zip(blocks, palette(len(blocks)), strict=True))
    with style("accuracy_cost"):
        fig = new_figure(3.3 * len(panels) + (1.6 if len(blocks) > 1 else 0.0), 3.0)
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
            legend_right(axes[-1])
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


def _row_evidence(data: ReportData, row: Row, metric: str) -> list[Evidence] | None:
    """The per-image evidence of every job that gave ``row`` its ``metric`` (same images), else None."""
    if metric not in data.jobs.columns:
        return None
    frame = data.jobs.set_index("job_id")
    evidence = [data.evidence.get(j) for j in row.job_ids if present(frame.at[j, metric])]
    if not evidence or any(e is None or not e.has(metric) for e in evidence):
        return None
    found = [e for e in evidence if e is not None]
    return found if all(found[0].same_images(e) for e in found) else None


def _accuracy_bar(
    data: ReportData, row: Row, metric: str, mean: tuple[float, float | None]
) -> tuple[float, float]:
    """How far the error bar reaches below and above the row's mean, in stored units."""
    evidence = _row_evidence(data, row, metric)
    if evidence is None:
        return (mean[1] or 0.0, mean[1] or 0.0)
    interval = value_interval([e.per_image(metric) for e in evidence], metric)
    return (max(0.0, mean[0] - interval.low), max(0.0, interval.high - mean[0]))
