"""Metrics against hand-computed confusion matrices and against torchmetrics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

from segbench.engine.metrics import ConfusionMatrix, ForegroundMetrics, boundary_band
from segbench.errors import UserError

IGNORE = 255

# Ground truth / prediction of 6 pixels, one ignored; by hand:
#   gt\pred  0  1  2
#   0        1  1  0
#   1        0  1  1
#   2        0  0  1
HAND_TARGET = torch.tensor([[[0, 0, 1], [1, 2, IGNORE]]])
HAND_PRED = torch.tensor([[[0, 1, 1], [2, 2, 0]]])


def _random_batch(
    generator: torch.Generator, num_classes: int, shape: tuple[int, ...] = (2, 16, 16)
) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.randint(0, num_classes, shape, generator=generator)
    target[torch.rand(shape, generator=generator) < 0.15] = IGNORE
    logits = torch.randn((shape[0], num_classes, *shape[1:]), generator=generator)
    # Correlate the prediction with the target so IoUs are not all ~1/(2C).
    labelled = target != IGNORE
    boost = F.one_hot(torch.where(labelled, target, 0), num_classes).permute(0, 3, 1, 2)
    logits += 2.0 * boost
    return logits, target


def test_confusion_matrix_matches_hand_computation() -> None:
    cm = ConfusionMatrix(3, ignore_index=IGNORE)
    cm.update(HAND_PRED, HAND_TARGET)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    scores = cm.compute()
    assert scores["per_class_iou"] == pytest.approx([1 / 2, 1 / 3, 1 / 2])
    assert scores["mIoU"] == pytest.approx(4 / 9)
    assert scores["pixel_acc"] == pytest.approx(3 / 5)
    assert scores["mean_acc"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert scores["fwIoU"] == pytest.approx(2 / 5 * 1 / 2 + 2 / 5 * 1 / 3 + 1 / 5 * 1 / 2)
    assert scores["per_class_f1"] == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert scores["mean_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)


def test_logits_and_label_maps_give_the_same_matrix() -> None:
    logits, target = _random_batch(torch.Generator().manual_seed(0), 4)
    from_logits = ConfusionMatrix(4)
    from_logits.update(logits, target)
    from_labels = ConfusionMatrix(4)
    from_labels.update(logits.argmax(1).to(torch.int32), target.to(torch.uint8))
    assert torch.equal(from_logits.matrix, from_labels.matrix)
    assert int(from_logits.matrix.sum()) == int((target != IGNORE).sum())


def test_miou_is_nan_aware_over_classes_in_ground_truth_or_prediction() -> None:
    # Class 3 appears nowhere (NaN, left out); class 2 only in the prediction (IoU 0, counted).
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 2, 1, 1]]])
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    scores = cm.compute()
    iou = scores["per_class_iou"]
    assert iou[:3] == pytest.approx([1 / 2, 1.0, 0.0])
    assert math.isnan(iou[3])
    assert scores["mIoU"] == pytest.approx((1 / 2 + 1.0 + 0.0) / 3)
    assert math.isnan(scores["per_class_acc"][2])  # no ground truth: accuracy undefined
    reference = MulticlassJaccardIndex(4, average="macro")
    reference.update(pred, target)
    assert scores["mIoU"] == pytest.approx(float(reference.compute()), abs=1e-6)


def test_matches_torchmetrics_on_random_batches_with_ignored_pixels() -> None:
    num_classes = 5
    generator = torch.Generator().manual_seed(1)
    ours = ConfusionMatrix(num_classes, ignore_index=IGNORE)
    references = {
        "per_class": MulticlassJaccardIndex(num_classes, average=None, ignore_index=IGNORE),
        "mIoU": MulticlassJaccardIndex(num_classes, average="macro", ignore_index=IGNORE),
        "fwIoU": MulticlassJaccardIndex(num_classes, average="weighted", ignore_index=IGNORE),
        "pixel_acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE),
        "mean_acc": MulticlassAccuracy(num_classes, average="macro", ignore_index=IGNORE),
        "mean_f1": MulticlassF1Score(num_classes, average="macro", ignore_index=IGNORE),
    }
    for _ in range(3):
        logits, target = _random_batch(generator, num_classes)
        ours.update(logits, target)
        for metric in references.values():
            metric.update(logits, target)
    scores = ours.compute()
    expected = {name: metric.compute() for name, metric in references.items()}
    assert scores["per_class_iou"] == pytest.approx(expected["per_class"].tolist(), abs=1e-6)
    for name in ("mIoU", "fwIoU", "pixel_acc", "mean_acc", "mean_f1"):
        assert scores[name] == pytest.approx(float(expected[name]), abs=1e-6), name


def test_updates_accumulate_like_one_big_update() -> None:
    generator = torch.Generator().manual_seed(2)
    batches = [_random_batch(generator, 3) for _ in range(3)]
    split, joined = ConfusionMatrix(3), ConfusionMatrix(3)
    for logits, target in batches:
        split.update(logits, target)
    joined.update(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    assert torch.equal(split.matrix, joined.matrix)
    split.reset()
    assert int(split.matrix.sum()) == 0


@pytest.mark.parametrize("ignore_index", [-1, 0, 255, None])
def test_ignore_index_anywhere_in_the_integer_range(ignore_index: int | None) -> None:
    generator = torch.Generator().manual_seed(3)
    target = torch.randint(0, 4, (2, 8, 8), generator=generator)
    pred = torch.randint(0, 4, (2, 8, 8), generator=generator)
    ignored = torch.rand(target.shape, generator=generator) < 0.3
    if ignore_index is not None:
        target[ignored] = ignore_index
    keep = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    for t, p in zip(target[keep].tolist(), pred[keep].tolist(), strict=True):
        expected[t, p] += 1
    cm = ConfusionMatrix(4, ignore_index=ignore_index)
    cm.update(pred, target)
    assert torch.equal(cm.matrix, expected)


def test_empty_and_all_ignored_inputs_count_nothing() -> None:
    cm = ConfusionMatrix(3)
    cm.update(torch.zeros(0, 4, 4, dtype=torch.int64), torch.zeros(0, 4, 4, dtype=torch.int64))
    cm.update(torch.zeros(1, 4, 4, dtype=torch.int64), torch.full((1, 4, 4), IGNORE))
    assert int(cm.matrix.sum()) == 0
    assert math.isnan(cm.compute()["mIoU"])
    assert math.isnan(cm.compute()["pixel_acc"])


@pytest.mark.parametrize(
    ("target_value", "shown"),
    [(7, "7"), (30, "30"), (-3, "-3")],
)
def test_labels_outside_the_classes_are_user_errors(target_value: int, shown: str) -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.int64)
    target[0, 0, 0] = target_value
    target[0, 1, 1] = IGNORE  # 30 lies between num_classes and ignore_index: caught too
    with pytest.raises(UserError, match=rf"label value\(s\) {shown} outside \[0, 5\).*ignore_index=255"):
        ConfusionMatrix(5).update(torch.zeros_like(target), target)


def test_bad_predictions_are_user_errors() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.int64)
    cm = ConfusionMatrix(3)
    with pytest.raises(UserError, match=r"predicted labels must be in \[0, 3\)"):
        cm.update(torch.full_like(target, 3), target)
    with pytest.raises(UserError, match="4 channels but the metric expects 3 classes"):
        cm.update(torch.zeros(1, 4, 4, 4), target)
    with pytest.raises(UserError, match=r"prediction shape \(1, 2, 2\) does not match target shape"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.int64), target)
    with pytest.raises(UserError, match="target must be an integer label map"):
        cm.update(target, target.float())


def test_foreground_metrics_match_hand_counts_and_torchmetrics() -> None:
    prob = torch.tensor([[[0.9, 0.6, 0.4, 0.2], [0.7, 0.1, 0.55, 0.8]]])
    target = torch.tensor([[[1, 0, 1, 0], [1, 0, IGNORE, 1]]])
    fg = ForegroundMetrics(threshold=0.5)
    fg.update(prob, target)
    # at 0.5: tp = 3 (0.9, 0.7, 0.8), fp = 1 (0.6), fn = 1 (0.4), tn = 2; 0.55 ignored
    scores = fg.compute()
    assert scores["fg_precision"] == pytest.approx(3 / 4)
    assert scores["fg_recall"] == pytest.approx(3 / 4)
    assert scores["fg_f1"] == pytest.approx(3 / 4)
    assert scores["fg_iou"] == pytest.approx(3 / 5)

    generator = torch.Generator().manual_seed(4)
    prob = torch.rand(3, 16, 16, generator=generator)
    target = (torch.rand(3, 16, 16, generator=generator) < prob).long()
    target[torch.rand(3, 16, 16, generator=generator) < 0.1] = IGNORE
    for threshold in (0.5, 0.3):
        ours = ForegroundMetrics(threshold=threshold)
        ours.update(prob, target)
        scores = ours.compute()
        kwargs = {"threshold": threshold, "ignore_index": IGNORE}
        for name, reference in (
            ("fg_iou", BinaryJaccardIndex(**kwargs)),
            ("fg_f1", BinaryF1Score(**kwargs)),
            ("fg_precision", BinaryPrecision(**kwargs)),
            ("fg_recall", BinaryRecall(**kwargs)),
        ):
            reference.update(prob, target)
            assert scores[name] == pytest.approx(float(reference.compute()), abs=1e-6), (name, threshold)


def test_foreground_metrics_reject_non_binary_targets_and_undefined_ratios_are_nan() -> None:
    fg = ForegroundMetrics()
    with pytest.raises(UserError, match="binary targets"):
        fg.update(torch.rand(1, 2, 2), torch.tensor([[[0, 2], [1, 0]]]))
    fg.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64))  # no foreground at all
    scores = fg.compute()
    assert math.isnan(scores["fg_precision"]) and math.isnan(scores["fg_iou"])


def test_boundary_band_on_a_hand_built_mask() -> None:
    mask = torch.zeros(8, 8, dtype=torch.int64)
    mask[:, 4:] = 1  # vertical boundary between columns 3 and 4
    band1 = boundary_band(mask, 1)
    assert band1.dtype == torch.bool and band1.shape == mask.shape
    assert band1.any(dim=0).nonzero().flatten().tolist() == [3, 4]
    assert band1[:, 3:5].all()
    band2 = boundary_band(mask, 2)
    assert band2.any(dim=0).nonzero().flatten().tolist() == [2, 3, 4, 5]

    # A void outline (VOC style) is a region for finding boundaries but never in the band.
    mask[0, :] = IGNORE
    band = boundary_band(mask, 1)
    assert not band[0].any()
    assert band[1].all()  # row 1 touches the void row
    assert not band[2:, :3].any() and not band[2:, 5:].any()

    uniform = torch.full((1, 6, 6), 2)
    assert not boundary_band(uniform, 3).any()  # the image border is not a boundary


def test_boundary_band_is_per_image_in_a_batch_and_checks_width() -> None:
    batch = torch.zeros(2, 6, 6, dtype=torch.int64)
    batch[1, 3:, :] = 1
    band = boundary_band(batch, 1)
    assert not band[0].any()
    assert band[1].any(dim=1).nonzero().flatten().tolist() == [2, 3]
    assert torch.equal(band[1], boundary_band(batch[1], 1))
    with pytest.raises(UserError, match="band width must be >= 1"):
        boundary_band(batch, 0)
