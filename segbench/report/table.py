"""A paper-style ablation table, independent of the output format.

Rows are the suite's variants (seeds folded into mean ± std), grouped in the
suite's blocks as the paper groups them; columns are the varied factors then
the metrics with their units; the best value of each metric is marked, and a
Δ column compares each row with the baseline row (:mod:`segbench.report.delta`).
Each row keeps its jobs, their sources and seeds, so the figures draw from the
same rows without matching anything back.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from segbench.config import ReportSettings, parse_suite
from segbench.errors import UserError, did_you_mean
from segbench.metrics import DEFAULT_COLUMNS, Metric, metric
from segbench.report.cells import (
    NOISY_MARK,
    PARTIAL_MARK,
    Block,
    Cell,
    Row,
    Table,
    best_keys,
    format_factor,
    mean_std,
    present,
)
from segbench.report.delta import add_deltas, format_deltas, interval_notes
from segbench.report.query import FACTOR_PREFIX, ReportData

_MAX_LABEL = 48


def suite_report_settings(data: ReportData) -> ReportSettings:
    """The report section of the suite text the run recorded (the suite as it was run)."""
    try:
        return parse_suite(data.run.suite_text, f"run {data.run.id}").suite.report
    except UserError:
        return ReportSettings()


def build_table(data: ReportData, settings: ReportSettings | None = None) -> Table:
    settings = settings or suite_report_settings(data)
    jobs = data.jobs
    if jobs.empty:
        raise UserError(f"run {data.run.id} of '{data.run.suite_name}' has no jobs")
    varied = data.factor_names()
    factors = list(settings.rows) if settings.rows is not None else varied
    for f in factors:
        if f not in varied:
            raise UserError(f"report.rows: '{f}' is not a factor of this suite{did_you_mean(f, varied)}")
    # Several models or datasets in one suite: they are factors too.
    extra = [c for c in ("model_label", "dataset_label") if jobs[c].nunique() > 1]
    names = list(settings.columns) if settings.columns else [c for c in DEFAULT_COLUMNS if c in jobs.columns]
    metrics = [metric(n) for n in names]
    delta_names = settings.delta if settings.delta is not None else ([metrics[0].name] if metrics else [])
    deltas = [metric(n) for n in delta_names]

    group_keys = ["block", "variant", *extra, *(FACTOR_PREFIX + f for f in varied)]
    groups = []
    for key, group in jobs.groupby(group_keys, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        groups.append((dict(zip(group_keys, key, strict=True)), group))
    unnamed = _unnamed_distinguishing(groups, ["block", "variant", *extra], factors, varied)
    factors += unnamed
    blocks: dict[Any, list[Row]] = {}
    for meta, group in groups:
        row_factors: dict[str, Any] = {}
        if "model_label" in extra:
            row_factors["model"] = meta["model_label"]
        if "dataset_label" in extra:
            row_factors["dataset"] = meta["dataset_label"]
        if present(meta["variant"]):
            row_factors["variant"] = meta["variant"]
        row_factors.update({f: _present_or_none(meta.get(FACTOR_PREFIX + f)) for f in factors})
        block = meta["block"] if present(meta["block"]) else None
        blocks.setdefault(block, []).append(_row(data, group, row_factors, metrics, block))
    all_rows = [r for rows in blocks.values() for r in rows]
    for m in metrics:
        shown = {id(r): r.cells[m.name].value for r in all_rows if m.name in r.cells}
        for r in (r for r in all_rows if id(r) in best_keys(m, shown)):
            r.cells[m.name].best = True
    add_deltas(data, all_rows, deltas, settings.baseline, settings.resamples)
    factor_cols = [(k, k) for k in ("model", "dataset") if any(k in r.factors for r in all_rows)]
    if any("variant" in r.factors for r in all_rows):
        factor_cols.append(("variant", "variant"))
    factor_cols += [(f, settings.labels.get(f, f)) for f in factors]
    for row in all_rows:
        _format(row, metrics)
        format_deltas(row, deltas)
    title = data.run.suite_name
    caption = _caption(data, metrics, settings)
    notes = _notes(data, all_rows, metrics) + (interval_notes(all_rows, deltas) if settings.resamples else [])
    if unnamed:
        shown_names = ", ".join(f"`{f}`" for f in unnamed)
        verb = "varies" if len(unnamed) == 1 else "vary"
        notes.append(
            f"{shown_names} also {verb} in this run but not in report.rows: shown as a column,"
            " so that no two rows look alike."
        )
    table = Table(
        title, caption, factor_cols, metrics, deltas, [Block(n, r) for n, r in blocks.items()], notes
    )
    _name_rows(table)
    return table


def _row(
    data: ReportData, group: pd.DataFrame, factors: dict[str, Any], metrics: list[Metric], block: str | None
) -> Row:
    """One row: the mean (and std) of each metric over the group's jobs, and the jobs themselves."""
    cells = {}
    for m in metrics:
        values = [v for v in group[m.name].tolist() if present(v)] if m.name in group else []
        if values:
            mean, std = mean_std(values)
            cells[m.name] = Cell("", mean, n=len(values), noisy=_noisy(data, group, m.name))
            if std is not None:
                cells[m.name + ":std"] = Cell("", std)
    statuses = set(group["status"])
    return Row(
        factors,
        cells,
        "done" if statuses == {"done"} else "/".join(sorted(statuses)),
        seeds=len(group),
        job_ids=[int(j) for j in group["job_id"]],
        source_ids=[int(j) for j in group["source_id"]],
        job_seeds=[int(s) for s in group["seed"]],
        block=block,
    )


def _noisy(data: ReportData, group: pd.DataFrame, name: str) -> bool:
    recorded = (data.details.get((int(j), name)) for j in group["job_id"])
    return any(m is not None and (m.extra or {}).get("noisy") for m in recorded)


def _present_or_none(v: Any) -> Any:
    return v if present(v) else None


def _format(row: Row, metrics: list[Metric]) -> None:
    for m in metrics:
        cell = row.cells.get(m.name)
        if cell is None:
            row.cells[m.name] = Cell("—" if row.status == "done" else row.status)
            continue
        std = row.cells.get(m.name + ":std")
        marks = (PARTIAL_MARK if row.partial(cell) else "") + (NOISY_MARK if cell.noisy else "")
        cell.text = m.show_mean(cell.value, std.value if std else None) + marks


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


def _name_rows(table: Table) -> None:
    """Number the rows and name them; a label that repeats across blocks names its block."""
    rows = table.rows()
    labels = [row_label(table, row) for row in rows]
    repeated = {label for label in labels if labels.count(label) > 1}
    for index, (row, label) in enumerate(zip(rows, labels, strict=True)):
        row.index = index
        row.label = label or row.block or f"row {index + 1}"
        if row.label in repeated and row.block:
            row.label = f"{row.block}: {row.label}"


def _unnamed_distinguishing(
    groups: list[tuple[dict[str, Any], pd.DataFrame]], fixed: list[str], named: list[str], varied: list[str]
) -> list[str]:
    """Varied factors that ``report.rows`` leaves out although rows would print alike without them.

    A grid that gained a factor (``train.lr``) after ``report.rows`` was written
    must not print two indistinguishable rows: those factors are shown too.
    """

    def shown(meta: dict[str, Any], factors: list[str]) -> tuple[str, ...]:
        keys = [*fixed, *(FACTOR_PREFIX + f for f in factors)]
        return tuple(repr(_present_or_none(meta.get(k))) for k in keys)

    def distinct(factors: list[str]) -> int:
        return len({shown(meta, factors) for meta, _ in groups})

    added: list[str] = []
    for f in varied:
        if distinct(named + added) == len(groups):
            break
        if f not in named and distinct(named + added + [f]) > distinct(named + added):
            added.append(f)
    return added


def _caption(data: ReportData, metrics: list[Metric], settings: ReportSettings) -> str:
    parts = [settings.caption] if settings.caption else []
    try:
        suite = parse_suite(data.run.suite_text, f"run {data.run.id}").suite
        h, w = suite.measure.input_size
        if {"complexity", "latency"} & set(suite.stages):
            parts.append(f"Input {suite.measure.batch_size}×3×{h}×{w}.")
    except UserError:
        suite = None
    for m in metrics:
        if m.note:
            parts.append(m.note + ".")
    if any(m.name.startswith("latency") for m in metrics):
        devices = sorted({d for d in data.jobs.get("device", pd.Series(dtype=object)).dropna()})
        parts.append(f"Latency: median over timed iterations on {', '.join(devices) or 'the run device'}.")
    commit = data.run.segbench_commit[:10] if data.run.segbench_commit else "no git"
    parts.append(f"Run {data.run.id}, segbench {commit}{' (dirty tree)' if data.run.segbench_dirty else ''}.")
    return " ".join(parts)


def _notes(data: ReportData, rows: list[Row], metrics: list[Metric]) -> list[str]:
    notes = [data.run.incomplete] if data.run.incomplete else []
    failed = data.jobs[data.jobs["status"] == "failed"]
    for _, job in failed.iterrows():
        notes.append(f"failed: {job['label']}: {job['error']}")
    if any(r.seeds > 1 for r in rows):
        notes.append("mean ± sample std over seeds.")
    counts = sorted(
        {
            f"{r.cells[m.name].n} of {r.seeds}"
            for r in rows
            for m in metrics
            if r.cells[m.name].value is not None and r.partial(r.cells[m.name])
        }
    )
    if counts:
        notes.append(f"{PARTIAL_MARK} mean over the seeds that got this far ({', '.join(counts)} seeds).")
    if any(r.cells[m.name].noisy for r in rows for m in metrics):
        notes.append(
            f"{NOISY_MARK} noisy: the timing's coefficient of variation stayed above its target"
            " (another load on the machine?); `segbench show JOB` has the samples."
        )
    return notes
