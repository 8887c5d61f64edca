"""Paired bootstrap over validation images: is a Δ mIoU an effect or noise?

Two rows of an ablation evaluated on the *same* images differ by Δ. Which
images a validation set happens to hold is the main source of chance in that Δ
(and, with several seeds, which trainings the seeds happened to give). The
bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993) asks
how Δ varies when the images are drawn again: each resample draws N images
with replacement, **the same draw for both rows** (the pairing: an image that is
hard for one model is hard for the other, so the difference is far less
variable than either score — the paired bootstrap of Koehn, EMNLP 2004, used
for the same question in machine translation), and recomputes each row's
dataset-level metric from the summed per-image counts of :mod:`segbench.evidence`
exactly as the evaluation did.

With several seeds per row the resample is **two-level**: the images are
resampled (shared by both rows), and each row's seeds are resampled with
replacement (independently per row: seed 0 of one model and seed 0 of another
are not the same training), the row's value being the mean over the drawn
seeds, as the table's mean over seeds. One seed reduces it to images only.

* The interval is the percentile interval of the resampled Δ (95 %).
* The p-value is two-sided, from the same distribution:
  ``p = min(1, 2 · min(#{Δ* ≤ 0} + 1, #{Δ* ≥ 0} + 1) / (R + 1))`` — twice the
  share of resamples on the far side of zero, with the +1 of Davison & Hinkley
  (*Bootstrap Methods and their Application*, 1997, eq. 4.11) so that a finite
  number of resamples never claims p = 0. It is consistent with the interval:
  p < 0.05 exactly when the 95 % interval leaves zero out (up to the rank of
  the quantile), and identical predictions give p = 1.

**Vectorised.** A resample is a vector of multiplicities ``w`` (how often each
image was drawn); its summed counts are ``w @ counts``. For R resamples that is
one matrix product ``W (R × N) @ counts (N × K)`` in float64 (exact: counts are
integers far below 2⁵³), chunked to bound memory. The random draws are made per
chunk of :data:`CHUNK` resamples from one seeded generator, so a result depends
only on ``(seed, resamples)``; :func:`reference_resample` is the plain loop it
must equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segbench.evidence import score

#: resamples unless a suite says otherwise (``report.resamples``)
DEFAULT_RESAMPLES = 10_000
CONFIDENCE = 0.95
#: the generator's seed: a report is reproducible, the same numbers every time
SEED = 0
#: resamples drawn and multiplied at once: 500 × N float64 multiplicities (VOC val: 5.8 MB)
CHUNK = 500

#: a side of the comparison: one per-image count array ``[N, ...]`` per seed
Side = Sequence[np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval around ``estimate``, with what was resampled."""

    estimate: float
    low: float
    high: float
    resamples: int
    images: int
    #: seeds per side (resampled too when any side has more than one)
    seeds: tuple[int, ...]
    #: two-sided p-value of "the value is 0" (paired Δ only)
    p_value: float | None = None

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def two_level(self) -> bool:
        return max(self.seeds) > 1


def _check(sides: Sequence[Side]) -> int:
    shapes = {a.shape for side in sides for a in side}
    if not shapes or any(not side for side in sides):
        raise ValueError("every side needs per-image evidence of at least one seed")
    if len(shapes) > 1:
        raise ValueError(f"per-image evidence of different shapes {sorted(shapes)}: not the same images")
    (shape,) = shapes
    if shape[0] < 1:
        raise ValueError("per-image evidence of no images")
    return int(shape[0])


def _draws(
    rng: np.random.Generator, m: int, n: int, seeds: Sequence[int]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One chunk's random draws: image indices ``[m, n]``, then per side seed indices ``[m, S]``."""
    images = rng.integers(0, n, size=(m, n))
    seed_draws = [
        rng.integers(0, s, size=(m, s)) if max(seeds) > 1 else np.zeros((m, 1), np.int64) for s in seeds
    ]
    return images, seed_draws


def _seed_weights(draws: np.ndarray, s: int) -> np.ndarray:
    """How often each of ``s`` seeds was drawn, over the number of draws: ``[m, s]``."""
    m, k = draws.shape
    counts = np.bincount((draws + np.arange(m)[:, None] * s).ravel(), minlength=m * s).reshape(m, s)
    return counts / k


def resample(sides: Sequence[Side], metric: str, resamples: int, seed: int = SEED) -> np.ndarray:
    """``[resamples, len(sides)]``: each side's metric (mean over its drawn seeds) per resample."""
    n = _check(sides)
    seeds = [len(side) for side in sides]
    tail = sides[0][0].shape[1:]
    # one column block per (side, seed): [N, Σ S · prod(tail)], float64 so BLAS multiplies it
    x = np.concatenate([a.reshape(n, -1) for side in sides for a in side], axis=1).astype(np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, len(sides)))
    for start in range(0, resamples, CHUNK):
        m = min(CHUNK, resamples - start)
        images, seed_draws = _draws(rng, m, n, seeds)
        w = np.bincount((images + np.arange(m)[:, None] * n).ravel(), minlength=m * n).reshape(m, n)
        summed = (w.astype(np.float64) @ x).reshape(m, sum(seeds), *tail)
        values = score(metric, summed)  # [m, Σ S]
        first = 0
        for j, s in enumerate(seeds):
            out[start : start + m, j] = (values[:, first : first + s] * _seed_weights(seed_draws[j], s)).sum(
                1
            )
            first += s
    return out


def reference_resample(sides: Sequence[Side], metric: str, resamples: int, seed: int = SEED) -> np.ndarray:
    """:func:`resample` as a plain loop over resamples (the same draws): what the fast path must equal."""
    n = _check(sides)
    seeds = [len(side) for side in sides]
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, len(sides)))
    for start in range(0, resamples, CHUNK):
        m = min(CHUNK, resamples - start)
        images, seed_draws = _draws(rng, m, n, seeds)
        for r in range(m):
            for j, side in enumerate(sides):
                per_seed = np.stack(
                    [score(metric, a[images[r]].astype(np.float64).sum(axis=0)) for a in side]
                )
                weights = _seed_weights(seed_draws[j][r : r + 1], seeds[j])[0]
                out[start + r, j] = (per_seed * weights).sum()
    return out


def _point(side: Side, metric: str) -> float:
    """The row's value as the table shows it: the mean over seeds of the metric over all images."""
    return float(np.mean([score(metric, a.astype(np.int64).sum(axis=0)) for a in side]))


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def paired_delta(
    row: Side,
    baseline: Side,
    metric: str,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Δ = row − baseline of ``metric`` with its paired (two-level with seeds) bootstrap interval and p."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    values = resample([row, baseline], metric, resamples, seed)
    deltas = values[:, 0] - values[:, 1]
    deltas = deltas[~np.isnan(deltas)]
    estimate = _point(row, metric) - _point(baseline, metric)
    if deltas.size == 0:
        return Interval(
            estimate, float("nan"), float("nan"), resamples, row[0].shape[0], (len(row), len(baseline))
        )
    low, high = _percentiles(deltas, confidence)
    below, above = int((deltas <= 0).sum()), int((deltas >= 0).sum())
    p = min(1.0, 2 * min(below + 1, above + 1) / (deltas.size + 1))
    return Interval(estimate, low, high, resamples, row[0].shape[0], (len(row), len(baseline)), p)


def value_interval(
    side: Side,
    metric: str,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """One row's ``metric`` with its bootstrap interval (images, and seeds when several): for plots."""
    values = resample([side], metric, resamples, seed)[:, 0]
    values = values[~np.isnan(values)]
    low, high = _percentiles(values, confidence) if values.size else (float("nan"), float("nan"))
    return Interval(_point(side, metric), low, high, resamples, side[0].shape[0], (len(side),))
