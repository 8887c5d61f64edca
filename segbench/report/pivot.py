"""Free-form views of a run: one metric, pivoted by whatever the user names.

``segbench report --pivot model,dataset --metric mIoU`` asks a question the
suite's own table does not lay out, e.g. "how does each model do on each
dataset, whatever the other factors". Each cell is the mean over the jobs that
fall into it (at least the seeds); when a cell folds jobs that differ in more
than the seed, the caption says which factors were averaged over, so a marginal
mean is never mistaken for one configuration's number.

Wide layouts (markdown, LaTeX) read like a paper's table; CSV and JSON are tidy
(one record per cell, raw unscaled values) for further analysis.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from segbench.errors import UserError, did_you_mean
from segbench.metrics import Metric, canonical
from segbench.metrics import metric as metric_of
from segbench.report.cells import best_keys, format_dimension, mean_std
from segbench.report.latex import bold, escape, label_of
from segbench.report.query import FACTOR_PREFIX, META_COLUMNS, ReportData
from segbench.report.render import csv_cell, md_bold, md_cell, md_text
from segbench.report.table import suite_report_settings

#: names a view can pivot on besides the suite's factors, and the job column each reads
_META_DIMENSIONS = {
    "model": "model_label",
    "dataset": "dataset_label",
    "block": "block",
    "variant": "variant",
    "seed": "seed",
}


@dataclass(frozen=True)
class PivotCell:
    """The jobs of one (row, column): their mean, sample std (two or more jobs) and count."""

    mean: float | None
    std: float | None
    count: int
    best: bool = False


@dataclass(frozen=True)
class Pivot:
    """One metric over the chosen row and column dimensions, in first-appearance order."""

    title: str
    metric: Metric
    row_dims: list[str]
    column_dims: list[str]
    headers: dict[str, str]  # dimension → header (the suite's report.labels for factors)
    row_keys: list[tuple[Any, ...]]
    column_keys: list[tuple[Any, ...]]
    cells: dict[tuple[tuple[Any, ...], tuple[Any, ...]], PivotCell]
    folded: list[str]  # dimensions averaged over inside at least one cell
    caption: str


def dimensions(data: ReportData) -> list[str]:
    """Everything a view can pivot on: model, dataset, block, variant, seed and every factor."""
    return [*_META_DIMENSIONS, *(f for f in data.factor_names() if f not in _META_DIMENSIONS)]


def metric_names(data: ReportData) -> list[str]:
    """The scalar metrics recorded for this run (vectors such as per-class IoU are not scalars)."""
    skip = set(META_COLUMNS)
    out = []
    for name in data.jobs.columns:
        if name in skip or name.startswith(FACTOR_PREFIX):
            continue
        values = [_number(v) for v in data.jobs[name].tolist()]
        if any(v is not None for v in values):
            out.append(name)
    return out


def build_pivot(data: ReportData, rows: list[str], metric: str, columns: list[str] | None = None) -> Pivot:
    """Group the run's jobs by ``rows`` × ``columns`` and average ``metric`` in each group."""
    columns = list(columns or [])
    valid = dimensions(data)
    if not rows:
        raise UserError(
            f"--pivot: name at least one row dimension, e.g. --pivot model; valid: {_list(valid)}"
        )
    for flag, names in (("--pivot", rows), ("--columns", columns)):
        for name in names:
            if name not in valid:
                raise UserError(
                    f"{flag}: '{name}' is not something this run varies or records{did_you_mean(name, valid)};"
                    f" valid: {_list(valid)}"
                )
    repeated = sorted({n for n in rows + columns if (rows + columns).count(n) > 1})
    if repeated:
        raise UserError(f"--pivot/--columns: {_list(repeated)} named twice; each dimension goes in one place")
    metric = _resolve_metric(data, metric)
    spec = metric_of(metric)

    jobs = data.jobs.sort_values("position", kind="stable")
    every = [d for d in valid if _source(d) in jobs.columns]
    groups: dict[tuple[tuple[Any, ...], tuple[Any, ...]], list[dict[str, Any]]] = {}
    row_keys: list[tuple[Any, ...]] = []
    column_keys: list[tuple[Any, ...]] = []
    for _, job in jobs.iterrows():
        values = {d: _plain(job[_source(d)]) for d in every}
        rk = tuple(values[d] for d in rows)
        ck = tuple(values[d] for d in columns)
        if rk not in row_keys:
            row_keys.append(rk)
        if ck not in column_keys:
            column_keys.append(ck)
        groups.setdefault((rk, ck), []).append({**values, "_value": _number(job[metric])})

    folded = [d for d in every if d not in rows + columns and any(_varies(g, d) for g in groups.values())]
    cells = {key: _cell(group) for key, group in groups.items()}
    cells = _mark_best(cells, column_keys, spec)
    labels = suite_report_settings(data).labels
    headers = {d: labels.get(d, d) for d in rows + columns}
    title = f"{data.run.suite_name}: {spec.header} by {', '.join(headers[d] for d in rows)}"
    if columns:
        title += f" × {', '.join(headers[d] for d in columns)}"
    return Pivot(
        title=title,
        metric=spec,
        row_dims=list(rows),
        column_dims=columns,
        headers=headers,
        row_keys=row_keys,
        column_keys=column_keys,
        cells=cells,
        folded=folded,
        caption=_caption(data, folded, labels),
    )


def _resolve_metric(data: ReportData, metric: str) -> str:
    """The recorded metric ``--metric`` names: as ``compare`` resolves it (exact, alias, any case)."""
    names = metric_names(data)
    found = canonical(metric, names)
    if found in names:
        return found
    if metric in data.jobs.columns and metric not in META_COLUMNS:
        raise UserError(
            f"--metric '{metric}' has no scalar value in run {data.run.id}; valid: {_list(names)}"
        )
    raise UserError(
        f"--metric: run {data.run.id} recorded no metric '{metric}'{did_you_mean(metric, names)};"
        f" valid: {_list(names)}"
    )


def _source(dimension: str) -> str:
    return _META_DIMENSIONS.get(dimension, FACTOR_PREFIX + dimension)


def _plain(value: Any) -> Any:
    """NaN (a factor a block does not set) becomes None, so it groups as one 'default' value;
    NumPy scalars become Python's, so keys compare and print as the values they are."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _varies(group: list[dict[str, Any]], dimension: str) -> bool:
    return len({repr(job[dimension]) for job in group}) > 1


def _cell(group: list[dict[str, Any]]) -> PivotCell:
    values = [job["_value"] for job in group if job["_value"] is not None]
    if not values:
        return PivotCell(None, None, 0)
    return PivotCell(*mean_std(values), len(values))


def _mark_best(
    cells: dict[tuple[tuple[Any, ...], tuple[Any, ...]], PivotCell],
    column_keys: list[tuple[Any, ...]],
    spec: Metric,
) -> dict[tuple[tuple[Any, ...], tuple[Any, ...]], PivotCell]:
    """Bold the best mean of each column, as the suite table bolds its best (on the printed value)."""
    out = dict(cells)
    for ck in column_keys:
        means = {key: c.mean for key, c in cells.items() if key[1] == ck and c.mean is not None}
        for key in best_keys(spec, means):
            out[key] = replace(cells[key], best=True)
    return out


def _caption(data: ReportData, folded: list[str], labels: dict[str, str]) -> str:
    parts = ["Each cell: the mean over its jobs (± sample std where there are several)."]
    others = [labels.get(d, d) for d in folded if d != "seed"]
    if "seed" in folded:
        parts.append("Seeds are averaged.")
    if others:
        parts.append(f"Also averaged over {', '.join(others)}: pivot on them to separate them.")
    commit = data.run.segbench_commit[:10] if data.run.segbench_commit else "no git"
    parts.append(f"Run {data.run.id}, segbench {commit}{' (dirty tree)' if data.run.segbench_dirty else ''}.")
    return " ".join(parts)


def _list(names: list[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _cell_text(pivot: Pivot, cell: PivotCell | None) -> str:
    if cell is None or cell.mean is None:
        return "—"
    return pivot.metric.show_mean(cell.mean, cell.std)


def _column_headers(pivot: Pivot) -> list[str]:
    if not pivot.column_dims:
        return [pivot.metric.header]
    return [
        ", ".join(
            f"{pivot.headers[d]}={format_dimension(v)}" for d, v in zip(pivot.column_dims, ck, strict=True)
        )
        for ck in pivot.column_keys
    ]


def _grid(pivot: Pivot) -> list[list[tuple[str, bool]]]:
    """Row by row: the row's dimension values then each column's (text, best)."""
    out = []
    for rk in pivot.row_keys:
        line = [(format_dimension(v), False) for v in rk]
        for ck in pivot.column_keys:
            cell = pivot.cells.get((rk, ck))
            line.append((_cell_text(pivot, cell), bool(cell and cell.best)))
        out.append(line)
    return out


def to_markdown(pivot: Pivot) -> str:
    headers = [md_cell(h) for h in [pivot.headers[d] for d in pivot.row_dims] + _column_headers(pivot)]
    align = [":---"] * len(pivot.row_dims) + ["---:"] * len(pivot.column_keys)
    lines = [
        f"### {md_text(pivot.title)}",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(align) + "|",
    ]
    for line in _grid(pivot):
        lines.append(
            "| " + " | ".join(md_bold(md_cell(t)) if best else md_cell(t) for t, best in line) + " |"
        )
    lines += ["", f"*{md_text(pivot.caption)}*"]
    return "\n".join(lines) + "\n"


def to_latex(pivot: Pivot) -> str:
    """A booktabs ``table`` environment, like :func:`segbench.report.latex.to_latex`."""
    headers = [escape(pivot.headers[d]) for d in pivot.row_dims] + [escape(h) for h in _column_headers(pivot)]
    spec = "l" * len(pivot.row_dims) + "r" * len(pivot.column_keys)
    lines = [
        r"% generated by segbench; needs \usepackage{booktabs} and \usepackage{amssymb}",
        r"\begin{table}[t]",
        r"  \centering",
        rf"  \caption{{{escape(pivot.title)}. {escape(pivot.caption)}}}",
        rf"  \label{{{label_of(pivot.title)}}}",
        rf"  \begin{{tabular}}{{@{{}}{spec}@{{}}}}",
        r"    \toprule",
        "    " + " & ".join(headers) + r" \\",
        r"    \midrule",
    ]
    for line in _grid(pivot):
        cells = [bold(escape(t)) if best else escape(t) for t, best in line]
        lines.append("    " + " & ".join(cells) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def records(pivot: Pivot) -> list[dict[str, Any]]:
    """Tidy records, one per cell, with the raw (unscaled) mean, std and job count."""
    out = []
    for rk in pivot.row_keys:
        for ck in pivot.column_keys:
            cell = pivot.cells.get((rk, ck))
            if cell is None:
                continue
            rec: dict[str, Any] = dict(zip(pivot.row_dims, rk, strict=True))
            rec.update(zip(pivot.column_dims, ck, strict=True))
            rec.update({"metric": pivot.metric.name, "mean": cell.mean, "std": cell.std, "n": cell.count})
            out.append(rec)
    return out


def to_csv(pivot: Pivot) -> str:
    recs = records(pivot)
    fields = [*pivot.row_dims, *pivot.column_dims, "metric", "mean", "std", "n"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(name) for name in fields])
    for rec in recs:
        writer.writerow([csv_cell(rec.get(name)) for name in fields])
    return buf.getvalue()


def to_json(pivot: Pivot) -> str:
    doc = {
        "title": pivot.title,
        "metric": {"name": pivot.metric.name, "header": pivot.metric.header, "scale": pivot.metric.scale},
        "rows": pivot.row_dims,
        "columns": pivot.column_dims,
        "folded": pivot.folded,
        "cells": [{k: list(v) if isinstance(v, tuple) else v for k, v in r.items()} for r in records(pivot)],
        "caption": pivot.caption,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


PIVOT_RENDERERS: dict[str, Callable[[Pivot], str]] = {
    "markdown": to_markdown,
    "latex": to_latex,
    "csv": to_csv,
    "json": to_json,
}


def pivot_table(
    data: ReportData,
    rows: list[str],
    metric: str,
    columns: list[str] | None = None,
    format: str = "markdown",
) -> str:
    """``segbench report --pivot ROWS --metric METRIC [--columns COLS]`` rendered as ``format``."""
    if format not in PIVOT_RENDERERS:
        raise UserError(
            f"--format {format}: a --pivot view renders as {', '.join(PIVOT_RENDERERS)};"
            " the HTML report shows the suite's own table with its plots"
        )
    return PIVOT_RENDERERS[format](build_pivot(data, rows, metric, columns))
