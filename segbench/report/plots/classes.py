"""Per-class IoU of every table row, as a heatmap (seeds averaged; blank where a class never occurs)."""

from __future__ import annotations

from segbench.metrics import metric
from segbench.report.cells import Row
from segbench.report.plots.figure import Plot, new_figure, style
from segbench.report.query import ReportData


def per_class_heatmap(data: ReportData, rows: list[Row]) -> Plot | None:
    """Per-class IoU of each row (seeds averaged); blank where a class never occurs."""
    scale = metric("per_class_iou").scale
    matrix: list[list[float | None]] = []
    shown: list[Row] = []
    classes: list[str] = []
    for r in rows:
        vectors = [
            data.details[(j, "per_class_iou")] for j in r.job_ids if (j, "per_class_iou") in data.details
        ]
        vectors = [v for v in vectors if v.samples]
        if not vectors:
            continue
        names = list((vectors[0].extra or {}).get("classes") or [])
        width = max(len(v.samples) for v in vectors)
        if len(names) != width:
            names = [f"class {i}" for i in range(width)]
        classes = classes if len(classes) >= len(names) else names
        means: list[float | None] = []
        for c in range(width):
            values = [v.samples[c] for v in vectors if c < len(v.samples) and v.samples[c] is not None]
            means.append(sum(values) / len(values) * scale if values else None)
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
    with style("per_class_iou"):
        from matplotlib import colormaps

        fig = new_figure(min(16.0, 2.6 + 0.55 * len(classes)), 1.2 + 0.32 * len(shown))
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
