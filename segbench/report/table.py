"""A paper-style ablation table, independent of the output format.

Rows are the suite's variants (seeds folded into mean ± std), grouped in the
suite's blocks as the paper groups them; columns are the varied factors then
the metrics with their units; the best value of each metric is marked, and a
Δ column compares each row with the baseline row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from segbench.bootstrap import CONFIDENCE, Interval, paired_delta
from segbench.config import ReportSettings, parse_suite
from segbench.errors import UserError, did_you_mean
from segbench.evidence import source_array
from segbench.report.columns import DEFAULT_COLUMNS, MetricColumn, column
from segbench.report.query import FACTOR_PREFIX, ReportData

#: marks a value averaged over fewer seeds than the suite asked for
PARTIAL_MARK = "†"
#: marks a timing whose spread never settled (flagged noisy when it was measured)
NOISY_MARK = "‡"
#: marks a Δ whose bootstrap interval excludes zero
SIGNIFICANT_MARK = "*"


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
    #: the jobs the row folds (one per seed)
    job_ids: list[int] = field(default_factory=list)

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
    metric_columns: list[MetricColumn]
    delta_columns: list[MetricColumn]
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)

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
    metrics = [column(n) for n in names]
    delta_names = settings.delta if settings.delta is not None else ([metrics[0].name] if metrics else [])
    deltas = [column(n) for n in delta_names]

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
        if _present(meta["variant"]):
            row_factors["variant"] = meta["variant"]
        row_factors.update({f: _present_or_none(meta.get(FACTOR_PREFIX + f)) for f in factors})
        cells = {}
        for m in metrics:
            values = [v for v in group[m.name].tolist() if _present(v)] if m.name in group else []
            if values:
                mean = sum(values) / len(values)
                cells[m.name] = Cell("", mean, n=len(values), noisy=_noisy(data, group, m.name))
                if len(values) > 1:
                    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                    cells[m.name + ":std"] = Cell("", std)
        statuses = set(group["status"])
        status = "done" if statuses == {"done"} else "/".join(sorted(statuses))
        blocks.setdefault(meta["block"] if _present(meta["block"]) else None, []).append(
            Row(row_factors, cells, status, seeds=len(group), job_ids=[int(j) for j in group["job_id"]])
        )
    all_rows = [r for rows in blocks.values() for r in rows]
    _mark_best(all_rows, metrics)
    baselines = _baselines(all_rows, settings.baseline)
    for row in all_rows:
        baseline = baselines.get(id(row))
        for m in deltas:
            if baseline is not None and m.name in row.cells and m.name in baseline.cells:
                d = row.cells[m.name].value - baseline.cells[m.name].value
                interval = None
                if baseline is not row and settings.resamples and source_array(m.name) is not None:
                    interval = _delta_interval(data, row, baseline, m.name, settings.resamples)
                row.cells["Δ" + m.name] = Cell("", d, interval=interval)
    factor_cols = [(k, k) for k in ("model", "dataset") if any(k in r.factors for r in all_rows)]
    if any("variant" in r.factors for r in all_rows):
        factor_cols.append(("variant", "variant"))
    factor_cols += [(f, settings.labels.get(f, f)) for f in factors]
    for row in all_rows:
        _format(row, metrics, deltas)
    title = data.run.suite_name
    caption = _caption(data, metrics, settings)
    notes = _notes(data, all_rows, metrics) + (
        _interval_notes(all_rows, deltas) if settings.resamples else []
    )
    if unnamed:
        shown = ", ".join(f"`{f}`" for f in unnamed)
        verb = "varies" if len(unnamed) == 1 else "vary"
        notes.append(
            f"{shown} also {verb} in this run but not in report.rows: shown as a column,"
            " so that no two rows look alike."
        )
    return Table(
        title, caption, factor_cols, metrics, deltas, [Block(n, r) for n, r in blocks.items()], notes
    )


def _noisy(data: ReportData, group: pd.DataFrame, metric: str) -> bool:
    extras = ((data.details.get((int(j), metric)) or {}).get("extra") or {} for j in group["job_id"])
    return any(extra.get("noisy") for extra in extras)


def _present_or_none(v: Any) -> Any:
    return v if _present(v) else None


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _mark_best(rows: list[Row], metrics: list[MetricColumn]) -> None:
    """Bold the best value as printed: rows that tie once rounded are all best, or none is."""
    for m in metrics:
        shown = {id(r): float(m.show(r.cells[m.name].value)) for r in rows if m.name in r.cells}
        if len(shown) < 2 or len(set(shown.values())) < 2:
            continue  # nothing to single out
        best = max(shown.values()) if m.higher_is_better else min(shown.values())
        for r in rows:
            if shown.get(id(r)) == best:
                r.cells[m.name].best = True


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


def _baselines(rows: list[Row], wanted: dict[str, Any] | None) -> dict[int, Row]:
    """Each row's Δ baseline: the row matching ``wanted`` (by ``id`` of the row compared).

    When ``wanted`` matches several rows (a grid: ``ppm: false`` at each learning
    rate), a row is compared with the match that agrees with it on every other
    factor, as a paper compares within a block; with a single match, every row
    is compared with it.
    """
    if not wanted:
        return {}
    matches = [r for r in rows if all(_eq(r.factors.get(k), v) for k, v in wanted.items())]
    if not matches:
        raise UserError(f"report.baseline {wanted}: no row has these factor values")
    for match in matches:
        match.is_baseline = True
    if len(matches) == 1:
        return {id(r): matches[0] for r in rows}

    def others(row: Row) -> list[tuple[str, Any]]:
        return sorted((k, repr(v)) for k, v in row.factors.items() if k not in wanted)

    by_others = {tuple(others(m)): m for m in matches}
    return {id(r): by_others[key] for r in rows if (key := tuple(others(r))) in by_others}


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) or isinstance(b, list | tuple):
        return list(a or []) == list(b or [])
    return a == b


def _format(row: Row, metrics: list[MetricColumn], deltas: list[MetricColumn]) -> None:
    for m in metrics:
        cell = row.cells.get(m.name)
        if cell is None:
            row.cells[m.name] = Cell("—" if row.status == "done" else row.status)
            continue
        std = row.cells.get(m.name + ":std")
        # A spread that rounds to zero (params, FLOPs across seeds) says nothing: leave it out.
        spread = f" ± {m.show(std.value)}" if std and float(m.show(std.value)) != 0 else ""
        marks = (PARTIAL_MARK if row.partial(cell) else "") + (NOISY_MARK if cell.noisy else "")
        cell.text = m.show(cell.value) + spread + marks
    for m in deltas:
        cell = row.cells.get("Δ" + m.name)
        if row.is_baseline:
            row.cells["Δ" + m.name] = Cell("baseline", 0.0)
        elif cell is not None:
            cell.text = f"{cell.value * m.scale:+.{m.digits}f}"
            if cell.interval is not None and not math.isnan(cell.interval.low):
                low, high = (_signed(v * m.scale, m.digits) for v in (cell.interval.low, cell.interval.high))
                mark = SIGNIFICANT_MARK if cell.interval.excludes_zero else ""
                cell.text += f" [{low}, {high}]{mark}"
        else:
            row.cells["Δ" + m.name] = Cell("")


def _signed(value: float, digits: int) -> str:
    """``+1.10`` / ``−0.31`` (a true minus sign, as the papers print an interval)."""
    return f"{value:+.{digits}f}".replace("-", "−")


def _delta_interval(
    data: ReportData, row: Row, baseline: Row, metric: str, resamples: int
) -> Interval | None:
    """The paired bootstrap interval of row − baseline, when both have evidence on the same images.

    Every job that gave the row its value must have evidence for ``metric``, all
    evaluated on the same images as the baseline's; otherwise the Δ stands
    without an interval (the notes say why) rather than with one over other data.
    """
    sides = []
    for r in (row, baseline):
        jobs = [j for j in r.job_ids if _present(_value(data, j, metric))]
        evidence = [data.evidence.get(j) for j in jobs]
        if not jobs or any(e is None or not e.has(metric) for e in evidence):
            return None
        sides.append(evidence)
    first = sides[0][0]
    if not all(first.same_images(e) for side in sides for e in side):
        return None
    return paired_delta(
        [e.per_image(metric) for e in sides[0]],
        [e.per_image(metric) for e in sides[1]],
        metric,
        resamples=resamples,
    )


def _value(data: ReportData, job_id: int, metric: str) -> Any:
    frame = data.jobs
    if metric not in frame.columns:
        return None
    values = frame.loc[frame["job_id"] == job_id, metric].tolist()
    return values[0] if values else None


def _interval_notes(rows: list[Row], deltas: list[MetricColumn]) -> list[str]:
    """What the Δ intervals resampled, and which Δs have none, so a reader knows what they mean."""
    notes = []
    for m in (m for m in deltas if source_array(m.name) is not None):
        cells = [r.cells.get("Δ" + m.name) for r in rows if not r.is_baseline]
        shown = [c.interval for c in cells if c is not None and c.interval is not None]
        bare = [c for c in cells if c is not None and c.value is not None and c.interval is None]
        if shown:
            images = sorted({i.images for i in shown})
            two_level = any(i.two_level for i in shown)
            what = (
                "the images and of the seeds of each row (a two-level bootstrap)"
                if two_level
                else "the images (one seed per row: the variation between trainings is not in it)"
            )
            notes.append(
                f"Δ {m.header} [low, high]: {CONFIDENCE:.0%} paired bootstrap percentile interval over "
                f"{'/'.join(map(str, images))} evaluation images, {shown[0].resamples:,} resamples of "
                f"{what}, the same images drawn for a row and its baseline; {SIGNIFICANT_MARK} the "
                "interval excludes 0."
            )
        if bare:
            notes.append(
                f"Δ {m.header} without an interval: no per-image evidence recorded for a row or its "
                "baseline (results from before segbench kept it), or they were evaluated on different images."
            )
    return notes


def format_factor(value: Any) -> str:
    """Booleans as ✓ / blank (as the papers print them); lists as a,b,c."""
    if value is True:
        return "✓"
    if value is False or value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _caption(data: ReportData, metrics: list[MetricColumn], settings: ReportSettings) -> str:
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


def _notes(data: ReportData, rows: list[Row], metrics: list[MetricColumn]) -> list[str]:
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
