"""Cityscapes fine annotations: ``leftImg8bit/`` + ``gtFine/``, 34 label ids → 19 train ids.

``*_gtFine_labelIds.png`` stores the full label ids 0..33; the 19 evaluated
classes map to train ids 0..18 and every other id (unlabeled, ego vehicle,
ground, parking, rail track, guard rail, ...) to 255, as cityscapesscripts'
``labels.py`` defines. When ``*_gtFine_labelTrainIds.png`` (made by
``createTrainIdLabelImgs``) is present it is read as is and preferred
(option ``labels``: ``auto``, ``labelTrainIds`` or ``labelIds``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segbench.data.classes import CITYSCAPES_MAX_LABEL_ID, CITYSCAPES_TRAIN_CLASSES
from segbench.data.layouts.base import (
    INVALID,
    Layout,
    Listing,
    Pair,
    files_by_key,
    index_table,
    strip_suffix,
)

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS, TRAIN_IDS = "labelIds", "labelTrainIds"


def label_id_table(ignore_index: int = 255) -> np.ndarray:
    """labelId → trainId: the 19 evaluated classes, everything else ignored."""
    table = np.full(256, INVALID, dtype=np.int16)
    table[: CITYSCAPES_MAX_LABEL_ID + 1] = ignore_index
    for train_id, (_, label_id, _) in enumerate(CITYSCAPES_TRAIN_CLASSES):
        table[label_id] = train_id
    table[255] = ignore_index  # some tools write the license plate (id -1) as 255
    return table


class Cityscapes(Layout):
    def has_split(self, split: str) -> bool:
        return (self.root / "leftImg8bit" / split).is_dir()

    def list_split(self, split: str) -> Listing:
        image_dir = self.require_dir(self.root / "leftImg8bit" / split, f"the {split} images")
        label_dir = self.require_dir(self.root / "gtFine" / split, f"the {split} fine annotations")
        preference = self.options.get("labels", "auto")
        listing = Listing(split)
        cities = sorted({p.name for p in image_dir.iterdir() if p.is_dir()} | _subdirs(label_dir))
        for city in cities:
            images = _keyed(image_dir / city, IMAGE_SUFFIX)
            label_ids = _keyed(label_dir / city, LABEL_IDS_SUFFIX)
            train_ids = _keyed(label_dir / city, TRAIN_IDS_SUFFIX)
            for key in sorted(images):
                pair = self._pair(images[key], label_ids.get(key), train_ids.get(key), preference)
                if pair is None:
                    wanted = TRAIN_IDS_SUFFIX if preference == TRAIN_IDS else LABEL_IDS_SUFFIX
                    listing.problems.append(
                        f"unpaired image {images[key]}: no mask at {label_dir / city / (key + wanted)}"
                    )
                else:
                    listing.pairs.append(pair)
            for key in sorted((set(label_ids) | set(train_ids)) - set(images)):
                mask = label_ids.get(key) or train_ids[key]
                listing.problems.append(
                    f"unpaired mask {mask}: no image at {image_dir / city / (key + IMAGE_SUFFIX)}"
                )
        return listing

    @staticmethod
    def _pair(image: Path, label_ids: Path | None, train_ids: Path | None, preference: str) -> Pair | None:
        if train_ids is not None and preference in ("auto", TRAIN_IDS):
            return Pair(image, train_ids, TRAIN_IDS)
        if label_ids is not None and preference in ("auto", LABEL_IDS):
            return Pair(image, label_ids, LABEL_IDS)
        return None

    def label_table(self, kind: str) -> np.ndarray:
        if kind == TRAIN_IDS:
            return index_table(self.num_classes, self.ignore_index)
        return label_id_table(self.ignore_index)

    def describe_values(self, kind: str) -> str:
        if kind == TRAIN_IDS:
            return f"train ids 0..{self.num_classes - 1} and 255 (ignored)"
        return f"label ids 0..{CITYSCAPES_MAX_LABEL_ID} (and 255)"


def _subdirs(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if p.is_dir()}


def _keyed(directory: Path, suffix: str) -> dict[str, Path]:
    if not directory.is_dir():
        return {}
    return files_by_key(directory, (suffix,), lambda name: strip_suffix(name, suffix))
