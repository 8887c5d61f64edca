"""The report's figures: accuracy against cost, per-class IoU, trimap curves, training loss.

Each figure is drawn from the rows of the table the report shows, one mark or
line per row (seeds averaged), labelled with that row's name and number, so a
reader can go from a point in a plot to its line in the table. The figures
are pure drawing code: every number comes from the :class:`ReportData`
loaded with ``figures=True`` (curves and sample images included), and each
:class:`~segbench.report.cells.Row` names its jobs. The HTML report inlines
the figures as SVG; :func:`write_plots` writes them (and the sample
predictions) as PNG files for slides or a paper.
"""

from __future__ import annotations

import re
from pathlib import Path

from segbench.report.cells import Table
from segbench.report.plots.accuracy import accuracy_cost_plot, accuracy_metric, pareto_front
from segbench.report.plots.classes import per_class_heatmap
from segbench.report.plots.curves import loss_plot, trimap_plot
from segbench.report.plots.figure import Plot, to_png, to_svg
from segbench.report.plots.samples import SamplePrediction, sample_predictions
from segbench.report.query import ReportData

__all__ = [
    "Plot",
    "SamplePrediction",
    "accuracy_cost_plot",
    "accuracy_metric",
    "build_plots",
    "close",
    "loss_plot",
    "pareto_front",
    "per_class_heatmap",
    "sample_predictions",
    "to_png",
    "to_svg",
    "trimap_plot",
    "write_plots",
]


def build_plots(data: ReportData, table: Table) -> list[Plot]:
    """Every figure whose numbers the run recorded, over the table's rows."""
    rows = table.rows()
    plots = [
        accuracy_cost_plot(data, rows),
        per_class_heatmap(data, rows),
        trimap_plot(data, rows),
        loss_plot(data, rows),
    ]
    return [p for p in plots if p is not None]


def close(plots: list[Plot]) -> None:
    """Drop the figures' drawing state (large for heatmaps) once they are rendered."""
    for plot in plots:
        plot.figure.clear()


def write_plots(data: ReportData, table: Table, out_dir: Path) -> list[Path]:
    """Every figure as ``<slug>.png`` and each sample prediction as ``sample_<row>_seed<s>_<name>``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = build_plots(data, table)
    written = []
    for plot in plots:
        path = out_dir / f"{plot.slug}.png"
        path.write_bytes(to_png(plot))
        written.append(path)
    close(plots)
    for sample in sample_predictions(data, table.rows()):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", sample.name)
        path = out_dir / f"sample_{sample.row.index + 1}_seed{sample.seed}_{stem}"
        path.write_bytes(sample.png)
        written.append(path)
    return written
