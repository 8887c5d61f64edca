"""Evaluation of a trained model: mIoU and friends at the label map's resolution.

Evaluation-only factors (scales, flip, sliding window, output stride) never touch
the weights: a model that can run at another output stride is switched with
``set_output_stride`` for the evaluation and switched back afterwards
(:func:`segbench.models.at_output_stride`), which is DeepLab v3+'s "train at OS 16,
evaluate at OS 8" (Table 3).

A one-channel (sigmoid) model on a two-class dataset is evaluated as a binary
task: its foreground probability σ(z) gives the foreground metrics, and
``eval.threshold`` (default 0.5) decides foreground for every metric, so a grid
over thresholds evaluates one trained checkpoint several times.

All counts accumulate on the device; the host reads them once at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from segbench.config import EvalSettings
from segbench.data.transforms import display_image
from segbench.engine.inference import forward_logits, predict_log_probs
from segbench.engine.metrics import (
    ConfusionMatrix,
    ForegroundMetrics,
    boundary_band,
    control_counts,
    label_map,
    per_image_counts,
    per_image_foreground,
)
from segbench.errors import UserError
from segbench.evidence import Control, score
from segbench.models import at_output_stride

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class EvalResult:
    """Metrics are fractions in [0, 1] (``val_loss`` in nats per labelled pixel).

    ``trimap`` maps a band width in px to the mIoU inside that band;
    ``samples`` holds ``(image uint8 [H, W, 3], ground truth [H, W], prediction [H, W])``
    of the first images, at the label map's resolution, for a report picture;
    ``per_image`` the per-image counts of :mod:`segbench.evidence` (``counts``,
    ``band@W``, ``fg``, ``control@M``), images in evaluation order, from which
    every metric above but ``val_loss`` recomputes exactly. A dataset that
    declares positive controls (a ``controls`` tuple of
    :class:`~segbench.evidence.Control`, as the diagnostic set does) gets each
    control's metric in ``metrics``.
    """

    metrics: dict[str, float]
    per_class_iou: list[float]
    trimap: dict[int, float]
    seconds: float
    images_per_s: float
    images: int
    samples: list[Sample] = field(default_factory=list)
    per_image: dict[str, np.ndarray] = field(default_factory=dict)


def _batches(dataset: Dataset, count: int, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive samples stacked up to ``batch_size``; a size change starts a new batch."""
    images: list[Tensor] = []
    masks: list[Tensor] = []
    for index in range(count):
        image, mask = dataset[index][:2]
        if images and (image.shape != images[0].shape or mask.shape != masks[0].shape):
            yield torch.stack(images), torch.stack(masks)
            images, masks = [], []
        images.append(image)
        masks.append(mask)
        if len(images) == batch_size:
            yield torch.stack(images), torch.stack(masks)
            images, masks = [], []
    if images:
        yield torch.stack(images), torch.stack(masks)


class _Scores:
    """Every count an evaluation needs, accumulated on the device batch by batch."""

    def __init__(
        self,
        num_classes: int,
        ignore_index: int,
        widths: tuple[int, ...],
        device: torch.device,
        threshold: float | None = None,
        controls: tuple[Control, ...] = (),
    ):
        self.ignore_index = ignore_index
        self.controls = controls
        self.num_classes = num_classes
        #: per evidence array, one ``[batch, ...]`` tensor of per-image counts per batch
        self.per_image: dict[str, list[Tensor]] = {}
        self.confusion = ConfusionMatrix(num_classes, ignore_index, device)
        fg_threshold = 0.5 if threshold is None else threshold
        self.foreground = ForegroundMetrics(fg_threshold, ignore_index, device) if num_classes == 2 else None
        self.bands = {w: ConfusionMatrix(num_classes, ignore_index, device) for w in widths}
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.labelled = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, log_probs: Tensor, pred: Tensor, masks: Tensor) -> None:
        self.confusion.update(pred, masks)  # first: it validates the labels
        self._keep("counts", per_image_counts(pred, masks, self.num_classes, self.ignore_index))
        self.loss_sum += F.nll_loss(log_probs, masks, ignore_index=self.ignore_index, reduction="sum")
        self.labelled += (masks != self.ignore_index).sum()
        if self.foreground is not None:
            fg_prob = log_probs[:, 1].exp()
            self.foreground.update(fg_prob, masks)
            positive = fg_prob >= self.foreground.threshold
            self._keep("fg", per_image_foreground(positive, masks, self.ignore_index))
        for width, band_confusion in self.bands.items():
            in_band = boundary_band(masks, width, self.ignore_index)
            band_masks = torch.where(in_band, masks, self.ignore_index)
            band_confusion.update(pred, band_masks)
            self._keep(
                f"band@{width}", per_image_counts(pred, band_masks, self.num_classes, self.ignore_index)
            )
        for control in self.controls:
            self._keep(
                control.array, control_counts(pred, masks, control, self.num_classes, self.ignore_index)
            )

    def _keep(self, name: str, counts: Tensor) -> None:
        self.per_image.setdefault(name, []).append(counts)

    def evidence(self) -> dict[str, np.ndarray]:
        """The per-image counts of every batch, images in order, on the host (one copy per array)."""
        return {name: torch.cat(parts).cpu().numpy() for name, parts in self.per_image.items()}

    def metrics(self) -> tuple[dict[str, float], list[float], dict[int, float]]:
        """``(metrics, per_class_iou, trimap)`` as :class:`EvalResult` holds them."""
        scores = self.confusion.compute()
        pixels = int(self.labelled)
        metrics = {
            "mIoU": scores["mIoU"],
            "pixel_acc": scores["pixel_acc"],
            "mean_acc": scores["mean_acc"],
            "fwIoU": scores["fwIoU"],
            "mean_f1": scores["mean_f1"],
            "val_loss": float(self.loss_sum) / pixels if pixels else math.nan,
        }
        if self.foreground is not None:
            metrics.update(self.foreground.compute())
        if self.controls:
            # From the summed per-image counts, as a recomputation from evidence does: bit for bit the same.
            evidence = self.evidence()
            for control in self.controls:
                summed = evidence[control.array].astype(np.int64).sum(axis=0)
                metrics[control.metric] = float(score(control.metric, summed))
        trimap = {w: m.compute()["mIoU"] for w, m in self.bands.items()}
        return metrics, scores["per_class_iou"], trimap


def _evaluation_size(dataset: Dataset, settings: EvalSettings) -> int:
    """How many images to evaluate (band widths and window strides are EvalSettings' to check)."""
    count = len(dataset)  # type: ignore[arg-type]
    if settings.max_samples is not None:
        count = min(count, settings.max_samples)
    if count == 0:
        raise UserError("the evaluation set is empty")
    return count


def _check_threshold(model: nn.Module, image: Tensor, num_classes: int, threshold: float) -> None:
    """``eval.threshold`` is a sigmoid's decision: refuse it for a softmax model rather than ignore it."""
    channels = forward_logits(model, image, num_classes).shape[1]
    if channels != 1:
        raise UserError(
            f"eval.threshold={threshold} thresholds the foreground probability of a one-channel (sigmoid) "
            f"binary model, but {type(model).__name__} returns {channels} channels (softmax, arg-max "
            "decides); leave eval.threshold unset for it"
        )


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    settings: EvalSettings,
    *,
    device: torch.device | str = "cpu",
    ignore_index: int = 255,
    num_samples: int = 3,
) -> EvalResult:
    """Evaluate ``model`` on ``dataset`` (``(image [3,H,W], mask [h,w])`` samples).

    Predictions are made at the image's resolution (per ``settings``: scales,
    flip, sliding window, output stride) and compared at the mask's resolution.
    For ``num_classes == 2`` the foreground metrics at probability 0.5 (or
    ``settings.threshold`` for a one-channel model) are added.
    The model's train/eval mode and output stride are restored afterwards.
    """
    device = torch.device(device)
    count = _evaluation_size(dataset, settings)
    threshold = settings.threshold
    controls = tuple(getattr(dataset, "controls", ()))
    scores = _Scores(num_classes, ignore_index, tuple(settings.trimap_widths), device, threshold, controls)
    samples: list[Sample] = []
    was_training = model.training
    model.to(device)
    model.eval()
    began = time.perf_counter()
    try:
        with at_output_stride(model, settings.output_stride), torch.inference_mode():
            for batch, (images_cpu, masks_cpu) in enumerate(_batches(dataset, count, settings.batch_size)):
                images = images_cpu.to(device, non_blocking=True)
                masks = masks_cpu.to(device, non_blocking=True).long()
                if batch == 0 and threshold is not None:
                    _check_threshold(model, images[:1], num_classes, threshold)
                log_probs = predict_log_probs(
                    model,
                    images,
                    masks.shape[-2:],
                    scales=settings.scales,
                    flip=settings.flip,
                    sliding_window=settings.sliding_window,
                    num_classes=num_classes,
                )
                if threshold is None:
                    pred = label_map(log_probs)
                else:
                    pred = (log_probs[:, 1].exp() >= threshold).long()
                scores.update(log_probs, pred, masks)
                size = (int(masks.shape[-2]), int(masks.shape[-1]))
                for i in range(min(num_samples - len(samples), len(images))):
                    samples.append(
                        (display_image(images[i], size), masks[i].cpu().numpy(), pred[i].cpu().numpy())
                    )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - began
    metrics, per_class_iou, trimap = scores.metrics()
    return EvalResult(
        metrics=metrics,
        per_class_iou=per_class_iou,
        trimap=trimap,
        seconds=seconds,
        images_per_s=count / seconds if seconds > 0 else math.nan,
        images=count,
        samples=samples,
        per_image=scores.evidence(),
    )
