"""Figure plumbing shared by every plot: the style, the canvas, SVG and PNG output, a row's values.

matplotlib is imported inside the functions that draw, and only its
object-oriented API with the Agg canvas is used (never pyplot), so importing
this package is cheap and rendering has no global state or display to need.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segbench.report.cells import Row, mean_std, present
from segbench.report.query import ReportData

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Plot:
    """One figure with the heading and one-line explanation a report prints with it."""

    slug: str
    title: str
    explanation: str
    figure: Figure


def row_values(data: ReportData, row: Row, metric: str) -> list[float]:
    """``metric`` of each of the row's jobs that recorded it (failed seeds have no value)."""
    if metric not in data.jobs.columns:
        return []
    frame = data.jobs.set_index("job_id")
    return [float(v) for v in (frame.at[j, metric] for j in row.job_ids) if present(v)]


def row_mean(data: ReportData, row: Row, metric: str) -> tuple[float, float | None] | None:
    """Mean and sample std of ``metric`` over the row's jobs, or None where none recorded it."""
    values = row_values(data, row, metric)
    return mean_std(values) if values else None


@contextmanager
def style(slug: str) -> Iterator[None]:
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


def new_figure(width: float, height: float) -> Figure:
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
    with style(plot.slug):
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
    with style(plot.slug):
        plot.figure.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def palette(count: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def legend_right(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
