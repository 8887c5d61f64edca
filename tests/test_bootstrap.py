"""The paired bootstrap over images and the per-image evidence it resamples.

Evidence is built from real label maps with the evaluation's own accumulator
(``per_image_counts``), so these tests pin the whole chain: per-image counts →
summed counts → dataset-level mIoU → resampled Δ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbench.bootstrap import paired_delta, reference_resample, resample, value_interval
from segbench.engine.metrics import ConfusionMatrix, per_image_counts
from segbench.evidence import Evidence

CLASSES = 4


def scenes(n: int, seed: int = 0, size: int = 16) -> torch.Tensor:
    """``n`` ground-truth label maps: a few rectangles of random classes, some ignored pixels."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.zeros(n, size, size, dtype=torch.int64)
    for i in range(n):
        for _ in range(3):
            y, x = torch.randint(0, size - 4, (2,), generator=gen).tolist()
            target[i, y : y + 5, x : x + 5] = int(torch.randint(1, CLASSES, (1,), generator=gen))
    target[:, 0, :3] = 255
    return target


def corrupt(target: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """A prediction: ``target`` with ``fraction`` of the pixels set to a random class."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(target.shape, generator=gen) < fraction
    labels = torch.randint(0, CLASSES, target.shape, generator=gen)
    return torch.where(noise | (target == 255), labels, target)


def counts(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    return per_image_counts(pred, target, CLASSES, 255).numpy()


def test_summed_per_image_counts_give_the_confusion_matrix_miou_exactly() -> None:
    target = scenes(12)
    pred = corrupt(target, 0.3, seed=1)
    cm = ConfusionMatrix(CLASSES)
    for start in range(0, 12, 5):  # batches of 5, 5, 2, as an evaluation accumulates them
        cm.update(pred[start : start + 5], target[start : start + 5])
    recorded = cm.compute()
    evidence = Evidence("diagnostic", "val", "sha", {"counts": counts(pred, target)})
    for metric in ("mIoU", "pixel_acc", "mean_acc", "fwIoU", "mean_f1"):
        assert evidence.recompute(metric) == recorded[metric], metric


def test_identical_predictions_give_zero_delta_with_an_interval_containing_zero() -> None:
    target = scenes(20)
    same = counts(corrupt(target, 0.3, seed=1), target)
    interval = paired_delta([same], [same.copy()], "mIoU", resamples=2000)
    assert interval.estimate == 0.0
    assert interval.low <= 0.0 <= interval.high
    assert not interval.excludes_zero
    assert interval.p_value == 1.0


def test_a_model_better_on_every_image_has_an_interval_excluding_zero() -> None:
    target = scenes(20)
    good = counts(corrupt(target, 0.1, seed=1), target)
    bad = counts(corrupt(target, 0.5, seed=2), target)
    per_image_good = np.array(
        [Evidence("d", "v", "s", {"counts": good[i : i + 1]}).recompute("mIoU") for i in range(20)]
    )
    per_image_bad = np.array(
        [Evidence("d", "v", "s", {"counts": bad[i : i + 1]}).recompute("mIoU") for i in range(20)]
    )
    assert (per_image_good > per_image_bad).all()  # the premise: better on every image
    interval = paired_delta([good], [bad], "mIoU", resamples=2000)
    assert interval.estimate > 0 and interval.low > 0 and interval.excludes_zero
    assert interval.p_value == pytest.approx(2 / 2001)
    worse = paired_delta([bad], [good], "mIoU", resamples=2000)
    assert worse.high < 0 and worse.excludes_zero


def test_the_interval_narrows_as_images_are_added() -> None:
    target = scenes(160)
    a = counts(corrupt(target, 0.25, seed=1), target)
    b = counts(corrupt(target, 0.3, seed=2), target)
    widths = []
    for n in (10, 40, 160):
        interval = paired_delta([a[:n]], [b[:n]], "mIoU", resamples=2000)
        widths.append(interval.high - interval.low)
    assert widths[0] > widths[1] > widths[2]


@pytest.mark.parametrize("seeds", [(1, 1), (3, 2)], ids=["images", "images-and-seeds"])
def test_vectorised_resampling_equals_the_plain_loop_exactly(seeds: tuple[int, int]) -> None:
    target = scenes(30)
    sides = [
        [counts(corrupt(target, 0.2 + 0.05 * k, seed=10 * j + k), target) for k in range(s)]
        for j, s in enumerate(seeds)
    ]
    # 1,100 resamples span three chunks, the last one partial
    fast = resample(sides, "mIoU", 1100, seed=7)
    slow = reference_resample(sides, "mIoU", 1100, seed=7)
    assert np.array_equal(fast, slow)
    assert np.array_equal(fast, resample(sides, "mIoU", 1100, seed=7))  # reproducible
    assert not np.array_equal(fast, resample(sides, "mIoU", 1100, seed=8))


def test_two_level_bootstrap_with_seeds_is_wider_than_images_alone() -> None:
    """Seeds that disagree add their spread: resampling them widens the interval."""
    target = scenes(40)
    row = [counts(corrupt(target, f, seed=k), target) for k, f in enumerate((0.1, 0.3, 0.5))]
    base = [counts(corrupt(target, 0.3, seed=9), target)]
    one = paired_delta(row[1:2], base, "mIoU", resamples=2000)
    three = paired_delta(row, base, "mIoU", resamples=2000)
    assert three.two_level and not one.two_level
    assert three.high - three.low > one.high - one.low


def test_value_interval_brackets_the_row_value() -> None:
    target = scenes(30)
    side = [counts(corrupt(target, 0.3, seed=1), target)]
    interval = value_interval(side, "mIoU", resamples=2000)
    assert interval.low < interval.estimate < interval.high
    assert interval.p_value is None


def test_evidence_encodes_compactly_and_decodes_exactly() -> None:
    target = scenes(50)
    arrays = {"counts": counts(corrupt(target, 0.3, seed=1), target), "fg": np.zeros((50, 4), np.int64)}
    evidence = Evidence("diagnostic", "val", "abc", arrays)
    blob = evidence.encode()
    back = Evidence.decode("diagnostic", "val", "abc", blob)
    assert set(back.arrays) == {"counts", "fg"}
    assert np.array_equal(back.arrays["counts"], arrays["counts"])
    assert back.recompute("mIoU") == evidence.recompute("mIoU")
    assert len(blob) < arrays["counts"].nbytes  # compressed int32, not int64
    with pytest.raises(ValueError, match="format"):
        Evidence.decode("diagnostic", "val", "abc", blob, fmt="npz-v0")
