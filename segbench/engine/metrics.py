"""Segmentation metrics: a confusion matrix on the tensors' device, foreground metrics, trimap band.

Everything accumulates integer counts on the device the predictions live on and
only turns them into fractions in ``compute()``; an evaluation therefore does one
host sync per batch (for input validation) and none per pixel.

**The mIoU convention.** Intersections and unions are summed over the *whole*
evaluation set, per class; the mean is then taken over the classes that occur in
the ground truth *or* in the prediction (a class absent from both has ``0 / 0``
IoU, reported as NaN and left out of the mean). This is what mmseg
(``nanmean`` of total intersect / union), torchvision's reference scripts and
torchmetrics' ``MulticlassJaccardIndex(average="macro")`` do, and what the
papers' tables report. Per-image averaging, or counting absent classes as 0 or 1,
gives different numbers and is deliberately not offered.
"""

from __future__ import annotations

from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor

from segbench.errors import UserError
from segbench.evidence import CONFUSION_METRICS, Control, confusion_scores, foreground_scores


class SegmentationScores(TypedDict):
    """What :meth:`ConfusionMatrix.compute` returns (a plain dict at runtime)."""

    mIoU: float
    pixel_acc: float
    mean_acc: float
    fwIoU: float
    mean_f1: float
    per_class_iou: list[float]
    per_class_acc: list[float]
    per_class_f1: list[float]


def label_map(scores: Tensor) -> Tensor:
    """Arg-max over the class dimension 1 of logits / probabilities ``[N, C, H, W]``.

    ``max(dim=1).indices`` has ``argmax``'s semantics (first maximum on ties, NaN
    wins) but is about five times faster over a non-innermost dimension on CPU.
    """
    return scores.max(dim=1).indices


def _check_integer(name: str, tensor: Tensor) -> None:
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise UserError(f"{name} must be an integer label map, got dtype {tensor.dtype}")


class ConfusionMatrix:
    """``num_classes × num_classes`` pixel counts: row = ground truth, column = prediction.

    ``update`` takes a label map ``[N, H, W]`` or logits / probabilities
    ``[N, C, H, W]`` (arg-maxed over ``C``) and the target ``[N, H, W]``. Pixels whose
    target is ``ignore_index`` are not counted; any other target value outside
    ``[0, num_classes)`` is a :class:`UserError` (it means the dataset and the
    model disagree on the number of classes), never silently dropped.
    """

    def __init__(
        self, num_classes: int, ignore_index: int | None = 255, device: torch.device | str | None = None
    ):
        if num_classes < 1:
            raise UserError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch: a min/max pass (validation, one host sync), one fused add, one ``bincount``."""
        pred = self._labels(pred, target)
        _check_integer("target", target)
        if target.device != self.matrix.device:
            self.matrix = self.matrix.to(target.device)
        if target.numel() == 0:
            return
        n = self.num_classes
        ignore = self.ignore_index
        lo, hi = (int(v) for v in torch.aminmax(target))
        # Ignored pixels land in an extra row ``dump`` of the bincount that is dropped
        # below. An ignore_index >= num_classes (VOC's 255) is such a row already; a
        # negative or in-range one is moved to row ``num_classes`` first (rare: one more pass).
        dump = None
        if ignore is not None and ignore >= n:
            dump = ignore
        elif ignore is not None and lo <= ignore <= hi:
            target = torch.where(target == ignore, n, target)
            dump = n
            lo, hi = (int(v) for v in torch.aminmax(target))
        if lo < 0:
            raise UserError(self._bad_labels_message([lo]))
        if hi >= n and hi != dump:
            raise UserError(self._bad_labels_message([hi]))
        index = torch.add(pred, target, alpha=n).reshape(-1)  # promotes uint8 masks to int64 first
        rows = torch.bincount(index, minlength=(max(hi, n - 1) + 1) * n).view(-1, n)
        if rows.shape[0] > n:
            extra = rows[n:].sum(dim=1)
            if dump is not None:
                extra[dump - n] = 0
            if bool(extra.any()):
                bad = (torch.nonzero(extra).flatten() + n).tolist()
                raise UserError(self._bad_labels_message(bad))
        self.matrix += rows[:n]

    def _labels(self, pred: Tensor, target: Tensor) -> Tensor:
        """Prediction as an integer label map shaped like ``target``, range-checked."""
        if pred.dim() == target.dim() + 1:
            if pred.shape[1] != self.num_classes:
                raise UserError(
                    f"prediction has {pred.shape[1]} channels but the metric expects {self.num_classes} classes"
                )
            pred = label_map(pred)
        if pred.shape != target.shape:
            raise UserError(
                f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}; "
                "predict at the label map's resolution"
            )
        _check_integer("prediction", pred)
        if pred.numel():
            lo, hi = (int(v) for v in torch.aminmax(pred))
            if lo < 0 or hi >= self.num_classes:
                raise UserError(
                    f"predicted labels must be in [0, {self.num_classes}), got values in [{lo}, {hi}]"
                )
        return pred.to(torch.int64)

    def _bad_labels_message(self, values: list[int]) -> str:
        shown = ", ".join(str(v) for v in values[:8])
        return (
            f"target contains label value(s) {shown} outside [0, {self.num_classes}) that are not "
            f"ignore_index={self.ignore_index}; does the dataset have {self.num_classes} classes?"
        )

    def compute(self) -> SegmentationScores:
        """Metrics from the accumulated counts (fractions in [0, 1], NaN where undefined).

        ``mIoU``, ``mean_acc`` and ``mean_f1`` are NaN-aware means over classes
        (see the module docstring); ``pixel_acc`` is correct / labelled pixels and
        ``fwIoU`` weighs each class's IoU by its ground-truth pixel share (FCN, Long
        et al. 2015). The ``per_class_*`` lists have NaN for undefined classes.
        """
        cm = self.matrix.detach().to("cpu", torch.int64).numpy()
        scores = confusion_scores(cm.diagonal(), cm.sum(axis=1), cm.sum(axis=0))
        out = {name: float(scores[name]) for name in CONFUSION_METRICS}
        per_class = {
            name: scores[name].tolist() for name in ("per_class_iou", "per_class_acc", "per_class_f1")
        }
        return {**out, **per_class}  # type: ignore[typeddict-item]


class ForegroundMetrics:
    """Precision, recall, F1 and IoU of the foreground class of a binary task.

    ``update(fg_prob, target)`` thresholds the foreground probability ``[N, H, W]``
    at ``threshold`` (the Figaro-1k review reports IoU and F1 at 0.5); the target is
    ``0`` (background), ``1`` (foreground) or ``ignore_index``. Counts are summed
    over the whole set before the ratios, like the confusion matrix.
    """

    def __init__(
        self, threshold: float = 0.5, ignore_index: int | None = 255, device: torch.device | str | None = None
    ):
        if not 0.0 <= threshold <= 1.0:
            raise UserError(f"threshold is a probability in [0, 1], got {threshold}")
        self.threshold = threshold
        self.ignore_index = ignore_index
        self.counts = torch.zeros(4, dtype=torch.int64, device=device)  # tn, fp, fn, tp

    @torch.no_grad()
    def update(self, fg_prob: Tensor, target: Tensor) -> None:
        if fg_prob.shape != target.shape:
            raise UserError(
                f"foreground probability shape {tuple(fg_prob.shape)} does not match target shape "
                f"{tuple(target.shape)}"
            )
        if not fg_prob.is_floating_point():
            raise UserError(f"foreground metrics need probabilities (float), got dtype {fg_prob.dtype}")
        _check_integer("target", target)
        if target.device != self.counts.device:
            self.counts = self.counts.to(target.device)
        keep = (
            torch.ones_like(target, dtype=torch.bool)
            if self.ignore_index is None
            else target != self.ignore_index
        )
        labels = target[keep].to(torch.int64)
        if labels.numel():
            lo, hi = (int(v) for v in torch.aminmax(labels))
            if lo < 0 or hi > 1:
                raise UserError(
                    f"foreground metrics need binary targets (0, 1 or ignore_index={self.ignore_index}), "
                    f"got values in [{lo}, {hi}]"
                )
        positive = (fg_prob[keep] >= self.threshold).to(torch.int64)
        self.counts += torch.bincount(labels * 2 + positive, minlength=4)

    def compute(self) -> dict[str, float]:
        scores = foreground_scores(self.counts.detach().to("cpu", torch.int64).numpy())
        return {name: float(value) for name, value in scores.items()}


@torch.no_grad()
def per_image_counts(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None) -> Tensor:
    """Per image and class: intersection, ground-truth and predicted pixels, ``int64 [N, 3, C]``.

    The per-image evidence of :mod:`segbench.evidence`: summed over images these
    are the diagonal, row sums and column sums of the :class:`ConfusionMatrix`.
    ``pred`` and ``target`` are label maps ``[N, H, W]`` that the confusion matrix
    has already validated; ignored pixels go to an extra target row that is
    dropped. One ``bincount`` of ``N · (C+1) · C`` bins.
    """
    n, c = target.shape[0], num_classes
    if ignore_index is not None:
        target = torch.where(target == ignore_index, c, target)
    image = torch.arange(n, device=target.device).view(n, *([1] * (target.dim() - 1)))
    index = (image * (c + 1) + target) * c + pred
    cm = torch.bincount(index.reshape(-1), minlength=n * (c + 1) * c).view(n, c + 1, c)[:, :c]
    return torch.stack((cm.diagonal(dim1=1, dim2=2), cm.sum(dim=2), cm.sum(dim=1)), dim=1)


@torch.no_grad()
def control_counts(
    pred: Tensor, target: Tensor, control: Control, num_classes: int, ignore_index: int | None
) -> Tensor:
    """:func:`per_image_counts` inside ``control``'s region, zero outside its classes, ``[N, 3, C]``.

    Pixels whose ground truth is outside the region are treated as ignored, so a
    prediction there counts for nothing; the other classes' counts are zeroed, so
    their IoU is ``0 / 0`` (NaN) and the mean runs over the control's classes only.
    """
    void = num_classes if ignore_index is None else ignore_index
    if control.region is not None:
        inside = torch.isin(target, torch.tensor(control.region, device=target.device))
        target = torch.where(inside, target, void)
    counts = per_image_counts(pred, target, num_classes, void)
    keep = torch.zeros(num_classes, dtype=counts.dtype, device=counts.device)
    keep[list(control.classes)] = 1
    return counts * keep


@torch.no_grad()
def per_image_foreground(positive: Tensor, target: Tensor, ignore_index: int | None) -> Tensor:
    """Per image: tn, fp, fn, tp of a binary prediction ``positive`` (bool ``[N, H, W]``), ``[N, 4]``.

    The targets are already validated (0, 1 or ``ignore_index``) by :class:`ForegroundMetrics`;
    ignored pixels go to a fifth bin that is dropped.
    """
    n = target.shape[0]
    code = target.to(torch.int64) * 2 + positive.to(torch.int64)
    if ignore_index is not None:
        code = torch.where(target == ignore_index, 4, code)
    image = torch.arange(n, device=target.device).view(n, *([1] * (target.dim() - 1)))
    return torch.bincount((image * 5 + code).reshape(-1), minlength=n * 5).view(n, 5)[:, :4]


def _window_max(x: Tensor, width: int) -> Tensor:
    """Max over the ``(2·width+1)²`` window around each pixel (separable: two 1-D pools)."""
    k = 2 * width + 1
    x = F.max_pool2d(x, kernel_size=(1, k), stride=1, padding=(0, width))
    return F.max_pool2d(x, kernel_size=(k, 1), stride=1, padding=(width, 0))


@torch.no_grad()
def boundary_band(target: Tensor, width: int, ignore_index: int | None = 255) -> Tensor:
    """Pixels within ``width`` px of a label boundary: the trimap band of DeepLab v3+ Fig. 5.

    A pixel is in the band when some pixel at Chebyshev distance ``<= width`` has
    another label, so the band reaches ``width`` px into both regions. Ignored
    pixels count as a region of their own when finding boundaries (VOC marks object
    outlines as void, and DeepLab's trimap dilates exactly that outline) but are
    never in the band themselves. The image border is not a boundary. Computed on
    the target's device with two max-pools (min = -max(-x)), no per-pixel Python.

    ``target`` is ``[H, W]`` or ``[N, H, W]``; returns a bool mask of the same shape.
    """
    if width < 1:
        raise UserError(f"trimap band width must be >= 1 px, got {width}")
    _check_integer("target", target)
    squeeze = target.dim() == 2
    labels = (target[None] if squeeze else target)[:, None].to(torch.float32)  # exact for |label| < 2**24
    band = _window_max(labels, width) != -_window_max(-labels, width)
    band = band[:, 0]
    if squeeze:
        band = band[0]
    if ignore_index is not None:
        band &= target != ignore_index
    return band
