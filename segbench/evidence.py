"""Per-image evidence: the counts every accuracy metric is a function of, kept per validation image.

A dataset-level mIoU is a function of per-class pixel counts summed over the
images (see :mod:`segbench.engine.metrics`), so keeping those counts *per image*
— true positives, ground-truth pixels and predicted pixels per class — is
enough to recompute it, exactly, for any subset or resample of the images. That
is what makes a paired bootstrap over images possible after the fact
(:mod:`segbench.bootstrap`), without keeping a single prediction.

Arrays (int32, images first):

* ``counts`` ``[N, 3, C]``: per image and class, intersection (tp), ground-truth
  pixels and predicted pixels over the labelled pixels; union = gt + pred − tp,
  correct = Σ tp, labelled = Σ gt.
* ``band@W`` ``[N, 3, C]``: the same inside the trimap band of width W px.
* ``fg`` ``[N, 4]``: tn, fp, fn, tp of the foreground at the evaluation's threshold
  (binary tasks).
* ``control@M`` ``[N, 3, C]``: a positive control's counts (:class:`Control`, metric
  ``M``): the ``counts`` inside the control's region, zero for the classes outside it.

The formulas live here once (:func:`confusion_scores`): the recorded metrics and
every recomputation from evidence call the same code on the same integers, so a
recomputed mIoU equals the recorded one bit for bit. NumPy only: reports and
``compare`` read evidence without importing torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the format tag stored with each blob; a reader refuses one it does not know
FORMAT = "npz-v1"
_BAND = re.compile(r"^trimap_miou@(\d+)$")
#: metrics recomputed from per-class counts (``counts`` or ``band@W``)
CONFUSION_METRICS = ("mIoU", "pixel_acc", "mean_acc", "fwIoU", "mean_f1")
#: metrics recomputed from the foreground counts
FOREGROUND_METRICS = ("fg_precision", "fg_recall", "fg_f1", "fg_iou")
#: the positive controls' metrics (``docs/diagnostic.md``), each from its ``control@M`` array
CONTROL_METRICS = ("context_miou", "small_iou", "thin_iou")


@dataclass(frozen=True)
class Control:
    """A positive control a dataset declares: one factor's effect, measured where it decides.

    Its metric is the mean IoU of ``classes`` counted over the pixels whose ground
    truth is in ``region`` (None: every labelled pixel). The context control of the
    diagnostic set is car and boat over the vehicle pixels: it asks only "car or
    boat?", which the scene alone answers; a small-object control is the lamp's IoU
    over the whole image, false positives included.
    """

    metric: str
    classes: tuple[int, ...]
    region: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.metric not in CONTROL_METRICS:
            raise ValueError(f"control metric {self.metric!r} is not one of {', '.join(CONTROL_METRICS)}")
        if not self.classes:
            raise ValueError(f"control {self.metric} names no classes")

    @property
    def array(self) -> str:
        """The evidence array of its per-image counts."""
        return f"control@{self.metric}"


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` in float64, NaN where ``den == 0`` (undefined, not zero)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nan_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the non-NaN entries; NaN where there are none."""
    valid = ~np.isnan(values)
    total = np.where(valid, values, 0.0).sum(axis=-1)
    return _ratio(total, valid.sum(axis=-1))


def confusion_scores(tp: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Every confusion-matrix metric from per-class counts ``[..., C]`` (any leading batch axes).

    The mIoU convention of :mod:`segbench.engine.metrics`: a class counts when it
    occurs in the ground truth *or* the prediction (union > 0), else its IoU is
    NaN and it is left out of the mean.
    """
    tp, gt, pred = (np.asarray(a, dtype=np.float64) for a in (tp, gt, pred))
    total = gt.sum(axis=-1)
    iou = _ratio(tp, gt + pred - tp)
    acc = _ratio(tp, gt)
    f1 = _ratio(2 * tp, gt + pred)
    freq = _ratio(gt, total[..., None])
    fw = np.where(gt > 0, np.nan_to_num(freq) * np.nan_to_num(iou), 0.0).sum(axis=-1)
    return {
        "mIoU": _nan_mean(iou),
        "pixel_acc": _ratio(tp.sum(axis=-1), total),
        "mean_acc": _nan_mean(acc),
        "fwIoU": np.where(total > 0, fw, np.nan),
        "mean_f1": _nan_mean(f1),
        "per_class_iou": iou,
        "per_class_acc": acc,
        "per_class_f1": f1,
    }


def foreground_scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Foreground precision, recall, F1, IoU from ``[..., 4]`` counts (tn, fp, fn, tp)."""
    counts = np.asarray(counts, dtype=np.float64)
    fp, fn, tp = counts[..., 1], counts[..., 2], counts[..., 3]
    return {
        "fg_precision": _ratio(tp, tp + fp),
        "fg_recall": _ratio(tp, tp + fn),
        "fg_f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "fg_iou": _ratio(tp, tp + fp + fn),
    }


def source_array(metric: str) -> str | None:
    """The evidence array ``metric`` is recomputed from, or None when evidence cannot give it."""
    if metric in CONFUSION_METRICS:
        return "counts"
    if metric in FOREGROUND_METRICS:
        return "fg"
    if metric in CONTROL_METRICS:
        return f"control@{metric}"
    match = _BAND.match(metric)
    return f"band@{match.group(1)}" if match else None


def score(metric: str, summed: np.ndarray) -> np.ndarray:
    """``metric`` from counts summed over images: ``summed`` is ``[..., 3, C]`` or ``[..., 4]``."""
    array = source_array(metric)
    if array is None:
        raise ValueError(f"{metric} cannot be recomputed from per-image evidence")
    if array == "fg":
        return foreground_scores(summed)[metric]
    tp, gt, pred = summed[..., 0, :], summed[..., 1, :], summed[..., 2, :]
    region_miou = array.startswith(("band@", "control@"))
    return confusion_scores(tp, gt, pred)["mIoU" if region_miou else metric]


def image_ids_sha(identity: Mapping[str, Any], ids: Sequence[str]) -> str:
    """sha256 of the dataset identity (name, options, split) and the ordered image ids."""
    doc = json.dumps({"dataset": dict(identity), "ids": list(ids)}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


@dataclass(frozen=True)
class Evidence:
    """One evaluation's per-image counts, with what identifies the images."""

    dataset: str
    split: str
    #: :func:`image_ids_sha` of the evaluated images, in order: equal means the same images
    images_sha: str
    arrays: Mapping[str, np.ndarray]

    @property
    def images(self) -> int:
        return int(self.arrays["counts"].shape[0])

    @property
    def classes(self) -> int:
        return int(self.arrays["counts"].shape[-1])

    def same_images(self, other: Evidence) -> bool:
        """Evaluated on the same images in the same order (dataset, split, count and ids)."""
        return (self.dataset, self.split, self.images, self.images_sha) == (
            other.dataset,
            other.split,
            other.images,
            other.images_sha,
        )

    def has(self, metric: str) -> bool:
        array = source_array(metric)
        return array is not None and array in self.arrays

    def per_image(self, metric: str) -> np.ndarray:
        """The counts ``metric`` sums over images, ``[N, ...]``."""
        array = source_array(metric)
        if array is None or array not in self.arrays:
            raise KeyError(f"no per-image evidence for {metric}")
        return self.arrays[array]

    def recompute(self, metric: str) -> float:
        """``metric`` over all images, from the summed counts: equals the recorded value exactly."""
        return float(score(metric, self.per_image(metric).astype(np.int64).sum(axis=0)))

    def encode(self) -> bytes:
        """A compressed npz of the int32 arrays (VOC val, 1,449 × 21: tens of KB)."""
        buf = io.BytesIO()
        arrays = {}
        for name, array in self.arrays.items():
            if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int32).max):
                raise ValueError(f"evidence array {name} does not fit int32")
            arrays[name] = np.ascontiguousarray(array, dtype=np.int32)
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def decode(cls, dataset: str, split: str, images_sha: str, data: bytes, fmt: str = FORMAT) -> Evidence:
        if fmt != FORMAT:
            raise ValueError(f"per-image evidence in format '{fmt}': this segbench reads {FORMAT}")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        return cls(dataset, split, images_sha, arrays)
