"""Summary statistics of repeated timings, torch-free.

Latency distributions are skewed (a context switch makes one iteration slow,
nothing makes one fast), so the headline is the median; the mean, p90, IQR and
coefficient of variation describe the spread and are stored next to the raw
samples so any other statistic can be recomputed later.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SampleStats:
    """Median, mean, p90, IQR (p75 - p25) and CV of a list of samples, in the samples' unit."""

    median: float
    mean: float
    p90: float
    iqr: float
    cv: float
    minimum: float
    maximum: float
    count: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics.

    The same definition as ``numpy.percentile``'s default, so the stored p90
    matches what an analyst recomputes from the raw samples.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def coefficient_of_variation(samples: Sequence[float]) -> float:
    """Sample standard deviation (n - 1) over the mean; 0 for fewer than two samples."""
    if len(samples) < 2:
        return 0.0
    mean = statistics.fmean(samples)
    return statistics.stdev(samples) / mean if mean > 0 else math.inf


def summarize(samples: Sequence[float]) -> SampleStats:
    """All statistics of ``samples`` (at least one)."""
    if not samples:
        raise ValueError("summarize needs at least one sample")
    return SampleStats(
        median=statistics.median(samples),
        mean=statistics.fmean(samples),
        p90=percentile(samples, 90),
        iqr=percentile(samples, 75) - percentile(samples, 25),
        cv=coefficient_of_variation(samples),
        minimum=min(samples),
        maximum=max(samples),
        count=len(samples),
    )
