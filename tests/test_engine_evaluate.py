"""Evaluation: single / multi-scale / flip / sliding window, output stride, metrics at mask size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset, TensorDataset

from segbench.config import EvalSettings
from segbench.engine.evaluate import evaluate
from segbench.engine.inference import predict_log_probs, sliding_window_logits
from segbench.engine.metrics import ConfusionMatrix
from segbench.errors import UserError

IGNORE = 255


class PixelModel(nn.Module):
    """A 1×1 convolution: per-pixel, so equivariant to flips, crops and (inside regions) scaling."""

    def __init__(self, num_classes: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.classifier = nn.Conv2d(3, num_classes, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": self.classifier(x)}


class SymmetricConvModel(nn.Module):
    """A 3×3 convolution whose kernel is mirror-symmetric left-right: flip-equivariant, not per-pixel."""

    def __init__(self, num_classes: int = 3, symmetric: bool = True):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)
        if symmetric:
            with torch.no_grad():
                self.conv.weight.copy_((self.conv.weight + self.conv.weight.flip(-1)) / 2)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": self.conv(x)}


class StridedModel(nn.Module):
    """Pools by ``output_stride``, classifies, upsamples: the OS changes outputs, never weights."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        torch.manual_seed(2)
        self.classifier = nn.Conv2d(3, num_classes, 3, padding=1)
        self.output_stride = 4
        self.seen_strides: list[int] = []

    def set_output_stride(self, output_stride: int) -> None:
        self.output_stride = output_stride

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.seen_strides.append(self.output_stride)
        low = F.avg_pool2d(x, self.output_stride)
        return {
            "out": F.interpolate(
                self.classifier(low), size=x.shape[-2:], mode="bilinear", align_corners=False
            )
        }


def _block_dataset(
    num_images: int = 4, size: int = 32, block: int = 8, num_classes: int = 3
) -> TensorDataset:
    """Images of constant-colour ``block``-px squares and masks that a colour threshold explains."""
    generator = torch.Generator().manual_seed(5)
    coarse = torch.randn(num_images, 3, size // block, size // block, generator=generator)
    images = F.interpolate(coarse, scale_factor=block, mode="nearest")
    masks = (images[:, 0] > 0).long() + (images[:, 1] > 0.5).long()
    masks = masks.clamp_max(num_classes - 1)
    masks[:, 0, :3] = IGNORE
    return TensorDataset(images, masks)


def _single_scale_confusion(model: nn.Module, dataset: TensorDataset, num_classes: int) -> ConfusionMatrix:
    cm = ConfusionMatrix(num_classes, IGNORE)
    model.eval()
    with torch.no_grad():
        images, masks = dataset.tensors
        cm.update(model(images)["out"], masks)
    return cm


def test_single_scale_metrics_equal_a_direct_confusion_matrix_and_loss() -> None:
    model, dataset = PixelModel(), _block_dataset()
    result = evaluate(model, dataset, 3, EvalSettings(batch_size=3))
    expected = _single_scale_confusion(model, dataset, 3).compute()
    for name in ("mIoU", "pixel_acc", "mean_acc", "fwIoU", "mean_f1"):
        assert result.metrics[name] == pytest.approx(expected[name], abs=1e-12), name
    assert result.per_class_iou == pytest.approx(expected["per_class_iou"], nan_ok=True)
    images, masks = dataset.tensors
    with torch.no_grad():
        loss = F.cross_entropy(model(images)["out"], masks, ignore_index=IGNORE)
    assert result.metrics["val_loss"] == pytest.approx(float(loss), rel=1e-5)
    assert result.images == 4 and result.images_per_s > 0 and result.trimap == {}


def test_flip_of_a_flip_equivariant_model_equals_single_scale_and_a_plain_model_differs() -> None:
    images = _block_dataset().tensors[0]
    with torch.inference_mode():
        for symmetric in (True, False):
            model = SymmetricConvModel(symmetric=symmetric).eval()
            single = predict_log_probs(model, images, images.shape[-2:])
            flipped = predict_log_probs(model, images, images.shape[-2:], flip=True)
            assert torch.allclose(single, flipped, atol=1e-5) == symmetric


def test_multi_scale_and_flip_of_an_equivariant_model_equals_single_scale_inside_regions() -> None:
    model, dataset = PixelModel().eval(), _block_dataset(block=16, size=64)
    images = dataset.tensors[0]
    scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    with torch.inference_mode():
        single = predict_log_probs(model, images, (64, 64)).exp()
        multi = predict_log_probs(model, images, (64, 64), scales=scales, flip=True).exp()
    # Resizing blends colours only near the edges of the constant 16-px blocks.
    interior = torch.zeros(64, dtype=torch.bool)
    for start in range(0, 64, 16):
        interior[start + 3 : start + 13] = True
    interior = interior[:, None] & interior[None, :]
    assert torch.allclose(single[..., interior], multi[..., interior], atol=1e-5)
    assert torch.allclose(multi.sum(dim=1), torch.ones(4, 64, 64), atol=1e-5)  # still probabilities


def test_multi_scale_averages_softmax_probabilities_at_the_label_resolution() -> None:
    model = SymmetricConvModel(symmetric=False).eval()
    images = torch.randn(2, 3, 20, 20, generator=torch.Generator().manual_seed(6))
    out_size = (40, 40)
    with torch.inference_mode():
        got = predict_log_probs(model, images, out_size, scales=(0.5, 1.0), flip=True)
        views = []
        for scale in (0.5, 1.0):
            x = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
            for mirrored in (False, True):
                logits = model(x.flip(-1) if mirrored else x)["out"]
                logits = logits.flip(-1) if mirrored else logits
                logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
                views.append(logits.softmax(dim=1))
    assert torch.allclose(got.exp(), torch.stack(views).mean(dim=0), atol=1e-6)


def test_sliding_window_of_a_per_pixel_model_equals_whole_image_inference() -> None:
    model = PixelModel().eval()
    images = torch.randn(2, 3, 37, 29, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        whole = model(images)["out"]
        windows = sliding_window_logits(model, images, crop=16, stride=10)
        small = sliding_window_logits(model, images[..., :12, :12], crop=16, stride=10)  # smaller than a crop
    assert torch.allclose(whole, windows, atol=1e-5)
    assert torch.allclose(whole[..., :12, :12], small, atol=1e-5)
    dataset = TensorDataset(images, torch.zeros(2, 37, 29, dtype=torch.int64))
    window_result = evaluate(model, dataset, 3, EvalSettings(sliding_window={"crop": 16, "stride": 10}))
    assert window_result.metrics == pytest.approx(evaluate(model, dataset, 3, EvalSettings()).metrics)
    with pytest.raises(ValidationError, match="stride 20 is larger than crop 16"):  # before any job runs
        EvalSettings(sliding_window={"crop": 16, "stride": 20})


def test_eval_at_another_output_stride_keeps_weights_and_restores_the_stride() -> None:
    model, dataset = StridedModel(), _block_dataset()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    at_train_os = evaluate(model, dataset, 3, EvalSettings())
    model.seen_strides.clear()
    at_os2 = evaluate(model, dataset, 3, EvalSettings(output_stride=2))
    assert set(model.seen_strides) == {2}
    assert model.output_stride == 4
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert at_os2.metrics["val_loss"] != pytest.approx(at_train_os.metrics["val_loss"])

    bad = TensorDataset(dataset.tensors[0], torch.full_like(dataset.tensors[1], 9))
    with pytest.raises(UserError, match="label value"):
        evaluate(model, bad, 3, EvalSettings(output_stride=8))
    assert model.output_stride == 4  # restored on error too


def test_output_stride_on_a_model_that_cannot_change_it_is_a_user_error() -> None:
    with pytest.raises(UserError, match="PixelModel cannot change its output stride"):
        evaluate(PixelModel(), _block_dataset(), 3, EvalSettings(output_stride=8))


def test_binary_task_reports_foreground_metrics_at_half_probability() -> None:
    model, dataset = PixelModel(num_classes=2), _block_dataset(num_classes=2)
    result = evaluate(model, dataset, 2, EvalSettings())
    images, masks = dataset.tensors
    with torch.no_grad():
        fg = model(images)["out"].softmax(dim=1)[:, 1] >= 0.5
    keep = masks != IGNORE
    tp = int((fg & (masks == 1) & keep).sum())
    fp = int((fg & (masks == 0) & keep).sum())
    fn = int((~fg & (masks == 1) & keep).sum())
    assert result.metrics["fg_iou"] == pytest.approx(tp / (tp + fp + fn))
    assert result.metrics["fg_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert result.metrics["fg_precision"] == pytest.approx(tp / (tp + fp))
    assert result.metrics["fg_recall"] == pytest.approx(tp / (tp + fn))
    assert "fg_iou" not in evaluate(PixelModel(), _block_dataset(), 3, EvalSettings()).metrics


def _band_by_neighbours(masks: Tensor) -> Tensor:
    """Width-1 band the slow, obvious way: some 8-neighbour has another label (border replicated)."""
    padded = F.pad(masks[:, None].float(), (1, 1, 1, 1), mode="replicate")[:, 0].long()
    height, width = masks.shape[-2:]
    band = torch.zeros_like(masks, dtype=torch.bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            band |= padded[:, dy : dy + height, dx : dx + width] != masks
    return band & (masks != IGNORE)


def test_trimap_miou_per_band_width() -> None:
    model, dataset = PixelModel(), _block_dataset()
    result = evaluate(model, dataset, 3, EvalSettings(trimap_widths=(1, 64)))
    assert sorted(result.trimap) == [1, 64]
    # Every image has a boundary (its void corner), so a 64-px band covers every labelled pixel.
    assert result.trimap[64] == pytest.approx(result.metrics["mIoU"], abs=1e-12)
    images, masks = dataset.tensors
    cm = ConfusionMatrix(3, IGNORE)
    with torch.no_grad():
        cm.update(model(images)["out"], torch.where(_band_by_neighbours(masks), masks, IGNORE))
    assert result.trimap[1] == pytest.approx(cm.compute()["mIoU"], abs=1e-12)
    assert result.trimap[1] != pytest.approx(result.metrics["mIoU"])
    with pytest.raises(ValidationError, match="greater than or equal to 1"):  # before any job runs
        EvalSettings(trimap_widths=(0,))


class _MixedSizes(Dataset):
    """Images of two sizes whose masks are twice the image resolution."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(8)
        self.items = []
        for size in (8, 8, 8, 12, 12):
            image = torch.randn(3, size, size, generator=generator)
            mask = F.interpolate((image[None, :1] > 0).float(), scale_factor=2, mode="nearest")[0, 0].long()
            self.items.append((image, mask))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.items[index]


def test_mixed_image_sizes_and_masks_larger_than_images() -> None:
    model = PixelModel(num_classes=2)
    model.train()
    result = evaluate(model, _MixedSizes(), 2, EvalSettings(batch_size=4), num_samples=5)
    assert result.images == 5
    assert model.training  # mode restored
    image, gt, pred = result.samples[3]
    assert image.shape == (24, 24, 3) and image.dtype.name == "uint8"
    assert gt.shape == pred.shape == (24, 24)
    assert not math.isnan(result.metrics["mIoU"])

    limited = evaluate(model, _MixedSizes(), 2, EvalSettings(max_samples=2), num_samples=1)
    assert limited.images == 2 and len(limited.samples) == 1


def test_per_image_evidence_recomputes_every_metric_exactly_binary_and_trimap() -> None:
    """Summed per-image counts give the recorded metrics bit for bit, whatever the batching."""
    from segbench.evidence import Evidence

    model, dataset = PixelModel(num_classes=2), _block_dataset(num_classes=2)
    result = evaluate(model, dataset, 2, EvalSettings(batch_size=3, trimap_widths=(1, 3)))
    images = len(dataset)
    assert {k: v.shape for k, v in result.per_image.items()} == {
        "counts": (images, 3, 2),
        "band@1": (images, 3, 2),
        "band@3": (images, 3, 2),
        "fg": (images, 4),
    }
    evidence = Evidence("blocks", "val", "sha", result.per_image)
    for metric in ("mIoU", "pixel_acc", "mean_acc", "fwIoU", "mean_f1", "fg_iou", "fg_f1", "fg_precision"):
        assert evidence.recompute(metric) == result.metrics[metric], metric
    for width in (1, 3):
        assert evidence.recompute(f"trimap_miou@{width}") == result.trimap[width]
    # image i's counts are image i's alone: evaluating it by itself gives the same row
    alone = evaluate(model, Subset(dataset, [2]), 2, EvalSettings())
    assert np.array_equal(alone.per_image["counts"][0], result.per_image["counts"][2])
    assert np.array_equal(alone.per_image["fg"][0], result.per_image["fg"][2])
