"""The sample predictions a report shows: the same validation images for each table row."""

from __future__ import annotations

from dataclasses import dataclass

from segbench.report.cells import Row
from segbench.report.query import ReportData


@dataclass(frozen=True)
class SamplePrediction:
    """One stored ``image | ground truth | prediction`` PNG of one table row."""

    row: Row
    seed: int
    name: str
    png: bytes


def sample_predictions(
    data: ReportData, rows: list[Row], per_row: int = 3, max_rows: int = 8
) -> list[SamplePrediction]:
    """Each row's stored sample predictions from its first seed that has any, the same images across rows."""
    out = []
    for r in rows[:max_rows]:
        for source, seed in zip(r.source_ids, r.job_seeds, strict=True):
            if source in data.samples:
                images = sorted(data.samples[source], key=lambda s: s.name)[:per_row]
                out += [SamplePrediction(r, seed, s.name, s.png) for s in images]
                break
    return out
