"""Curves per table row: accuracy near object boundaries (trimap) and the training loss."""

from __future__ import annotations

from segbench.metrics import TRIMAP, metric
from segbench.report.cells import Row
from segbench.report.plots.figure import Plot, legend_right, new_figure, palette, row_mean, style
from segbench.report.query import ReportData


def trimap_plot(data: ReportData, rows: list[Row]) -> Plot | None:
    """mIoU inside a band around object boundaries against the band's width (DeepLab v3+ Fig. 5)."""
    widths = sorted(int(m.group(1)) for c in data.jobs.columns if (m := TRIMAP.match(c)))
    if not widths:
        return None
    lines = []
    for r in rows:
        points = [(w, row_mean(data, r, f"trimap_miou@{w}")) for w in widths]
        points = [(w, v[0] * metric(f"trimap_miou@{w}").scale) for w, v in points if v is not None]
        if points:
            lines.append((r, points))
    if not lines:
        return None
    with style("trimap"):
        fig = new_figure(7.5, 3.2)
        ax = fig.subplots()
        for (r, points), color in zip(lines, palette(len(lines)), strict=True):
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
        legend_right(ax)
    return Plot(
        "trimap",
        "Accuracy near object boundaries",
        "mIoU counted only inside a band of the given width around object boundaries (the trimap of DeepLab "
        "v3+ Fig. 5): a decoder's gain over bilinear upsampling shows at the narrow bands.",
        fig,
    )


def loss_plot(data: ReportData, rows: list[Row]) -> Plot | None:
    """Training loss over iterations per row: the seeds' mean with their min–max range shaded."""
    lines = [(r, [data.curves[j] for j in r.source_ids if j in data.curves]) for r in rows]
    lines = [(r, c) for r, c in lines if c]
    if not lines:
        return None
    # Rows that share a training run (evaluation-only factors) repeat a curve: draw it once, for all of them.
    shared: dict[tuple[tuple[float, ...], ...], list[tuple[Row, list[tuple[list[float], list[float]]]]]] = {}
    for r, runs in lines:
        shared.setdefault(tuple(tuple(v) for _, v in runs), []).append((r, runs))
    with style("loss"):
        fig = new_figure(7.5, 3.2)
        ax = fig.subplots()
        for group, color in zip(shared.values(), palette(len(shared)), strict=True):
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
        legend_right(ax)
    return Plot(
        "loss",
        "Training loss",
        "Training loss per iteration for each table row: the mean over seeds, shaded between the lowest "
        "and highest seed; rows that share a trained network (evaluation-only factors) share one curve.",
        fig,
    )
