"""The format-free report table, and how a value becomes a cell: mean ± std, best marks, factor text.

:func:`segbench.report.table.build_table` fills a :class:`Table`; markdown,
LaTeX, CSV, JSON and HTML only lay it out, the figures draw one mark per
:class:`Row` (which knows its jobs), and ``--pivot`` views reuse
:func:`mean_std` and :func:`best_keys`, so a number is averaged, printed
(:meth:`segbench.metrics.Metric.show_mean`) and bolded the same way everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from segbench.bootstrap import Interval
from segbench.metrics import Metric

#: marks a value averaged over fewer seeds than the suite asked for
PARTIAL_MARK = "†"
#: marks a timing whose spread never settled (flagged noisy when it was measured)
NOISY_MARK = "‡"
#: marks a Δ whose bootstrap interval excludes zero
SIGNIFICANT_MARK = "*"

_Key = TypeVar("_Key", bound=Hashable)


@dataclass
class Cell:
    text: str
    value: Any = None
    best: bool = False
    #: how many seeds the value averages (fewer than the row's seeds when some failed first)
    n: int = 1
    #: a timing behind it was flagged noisy (its CV stayed above the target)
    noisy: bool = False
    #: a Δ's paired bootstrap interval (None: no per-image evidence to resample)
    interval: Interval | None = None


@dataclass
class Row:
    factors: dict[str, Any]
    cells: dict[str, Cell]
    status: str
    seeds: int
    is_baseline: bool = False
    #: the jobs the row folds (one per seed), in the run's order
    job_ids: list[int] = field(default_factory=list)
    #: for each of ``job_ids``: the job holding its numbers, curves and images (a cached job's source)
    source_ids: list[int] = field(default_factory=list)
    #: for each of ``job_ids``: its seed
    job_seeds: list[int] = field(default_factory=list)
    #: the row's place in the table, counted from 0 (the figures number their points by it, from 1)
    index: int = 0
    #: a short name the figures print for the row (:func:`segbench.report.table.row_label`)
    label: str = ""
    block: str | None = None

    def partial(self, cell: Cell) -> bool:
        """The cell averages fewer seeds than the row ran (the others failed before that metric)."""
        return cell.n < self.seeds


@dataclass
class Block:
    name: str | None
    rows: list[Row]


@dataclass
class Table:
    title: str
    caption: str
    factor_columns: list[tuple[str, str]]  # (factor key, header)
    metric_columns: list[Metric]
    delta_columns: list[Metric]
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[Row]:
        """Every row, in the table's order."""
        return [row for block in self.blocks for row in block.rows]

    def headers(self) -> list[str]:
        return (
            [h for _, h in self.factor_columns]
            + [m.header for m in self.metric_columns]
            + [f"Δ {m.header}" for m in self.delta_columns]
        )

    def records(self) -> list[dict[str, Any]]:
        """Flat rows with raw values, for CSV/JSON exports."""
        out = []
        for block in self.blocks:
            for row in block.rows:
                rec: dict[str, Any] = {"block": block.name} if any(b.name for b in self.blocks) else {}
                rec.update(row.factors)
                for m in self.metric_columns:
                    cell = row.cells.get(m.name)
                    rec[m.name] = None if cell is None or cell.value is None else cell.value
                    std = row.cells.get(m.name + ":std")
                    if std is not None:
                        rec[m.name + "_std"] = std.value
                for m in self.delta_columns:
                    cell = row.cells.get("Δ" + m.name)
                    rec["delta_" + m.name] = None if cell is None else cell.value
                    interval = cell.interval if cell is not None else None
                    rec["delta_" + m.name + "_low"] = interval.low if interval else None
                    rec["delta_" + m.name + "_high"] = interval.high if interval else None
                    rec["delta_" + m.name + "_p"] = interval.p_value if interval else None
                rec["status"] = row.status
                rec["seeds"] = row.seeds
                out.append(rec)
        return out


def laid_out(
    table: Table,
    row: Row,
    text: Callable[[str], str],
    number: Callable[[str], str],
    bold: Callable[[str], str],
) -> list[str]:
    """A row's cells in column order as one format writes them: factors through ``text``, numbers
    and Δs through ``number``, each metric's best value through ``bold`` (as pivots bold theirs)."""
    out = [text(format_factor(row.factors.get(key))) for key, _ in table.factor_columns]
    for m in table.metric_columns:
        cell = row.cells[m.name]
        shown = number(cell.text)
        out.append(bold(shown) if cell.best else shown)
    out += [number(row.cells["Δ" + m.name].text) for m in table.delta_columns]
    return out


def present(value: Any) -> bool:
    """A recorded number: not missing, not NaN (a factor a block does not set, a metric not measured)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean and the sample standard deviation (None for a single value) of ``values`` (not empty)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def best_keys(metric: Metric, values: Mapping[_Key, float]) -> set[_Key]:
    """Which values to bold: the best as printed, so values that tie once rounded are all best, or none is.

    Nothing is singled out where fewer than two values differ once printed.
    """
    shown = {key: float(metric.show(value)) for key, value in values.items()}
    if len(set(shown.values())) < 2:
        return set()
    best = max(shown.values()) if metric.higher_is_better else min(shown.values())
    return {key for key, value in shown.items() if value == best}


def format_factor(value: Any) -> str:
    """A factor in a table cell: booleans as ✓ / blank (as the papers print them); lists as a,b,c."""
    if value is True:
        return "✓"
    if value is False or value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def format_dimension(value: Any) -> str:
    """A dimension's value as a pivot header, where a blank would say nothing: ✓/✗, 'default' if unset."""
    if value is False:
        return "✗"
    if value is None:
        return "default"
    return format_factor(value)
