"""The table's Δ columns: each row against its baseline row, with a paired bootstrap interval.

A row is compared with the row ``report.baseline`` names (within its block's
other factors when it names several); where both rows have per-image evidence
on the same images, the Δ carries a 95 % paired bootstrap interval over them
(:mod:`segbench.bootstrap`), else it stands alone and the notes say why.
"""

from __future__ import annotations

import math
from typing import Any

from segbench.bootstrap import CONFIDENCE, Interval, paired_delta
from segbench.errors import UserError
from segbench.evidence import source_array
from segbench.metrics import Metric
from segbench.report.cells import SIGNIFICANT_MARK, Cell, Row, present
from segbench.report.query import ReportData


def baselines(rows: list[Row], wanted: dict[str, Any] | None) -> dict[int, Row]:
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


def add_deltas(
    data: ReportData, rows: list[Row], deltas: list[Metric], wanted: dict[str, Any] | None, resamples: int
) -> None:
    """Give every row a ``Δ<metric>`` cell per delta metric (text filled by :func:`format_deltas`)."""
    found = baselines(rows, wanted)
    for row in rows:
        baseline = found.get(id(row))
        for m in deltas:
            if baseline is not None and m.name in row.cells and m.name in baseline.cells:
                d = row.cells[m.name].value - baseline.cells[m.name].value
                interval = None
                if baseline is not row and resamples and source_array(m.name) is not None:
                    interval = _delta_interval(data, row, baseline, m.name, resamples)
                row.cells["Δ" + m.name] = Cell("", d, interval=interval)


def format_deltas(row: Row, deltas: list[Metric]) -> None:
    """``+1.45``, ``+5.34 [+4.42, +6.25]*`` (interval with a true minus sign), or ``baseline``."""
    for m in deltas:
        cell = row.cells.get("Δ" + m.name)
        if row.is_baseline:
            row.cells["Δ" + m.name] = Cell("baseline", 0.0)
        elif cell is not None:
            cell.text = m.show_signed(cell.value)
            if cell.interval is not None and not math.isnan(cell.interval.low):
                low, high = (m.show_signed(v, minus="−") for v in (cell.interval.low, cell.interval.high))
                mark = SIGNIFICANT_MARK if cell.interval.excludes_zero else ""
                cell.text += f" [{low}, {high}]{mark}"
        else:
            row.cells["Δ" + m.name] = Cell("")


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
        jobs = [j for j in r.job_ids if present(_value(data, j, metric))]
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


def interval_notes(rows: list[Row], deltas: list[Metric]) -> list[str]:
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
