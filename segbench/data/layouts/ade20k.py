"""ADE20K as the SceneParsing benchmark ships it (ADEChallengeData2016), 150 classes.

The annotation PNGs store 0 for "other objects" and 1..150 for the classes. As
in PSPNet's evaluation (and mmsegmentation's ``reduce_zero_label``), 0 is
ignored and the classes shift down to 0..149.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segbench.data.layouts.base import INVALID, Layout, Listing, listing_by_stem

_SUBSETS = {"train": "training", "val": "validation"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ADE20K(Layout):
    def locate(self, root: Path) -> Path:
        nested = root / "ADEChallengeData2016"
        return nested if nested.is_dir() else root

    def has_split(self, split: str) -> bool:
        return (self.root / "images" / _SUBSETS[split]).is_dir()

    def list_split(self, split: str) -> Listing:
        subset = _SUBSETS[split]
        image_dir = self.require_dir(self.root / "images" / subset, f"the {split} images")
        mask_dir = self.require_dir(self.root / "annotations" / subset, f"the {split} annotations")
        return listing_by_stem(split, image_dir, mask_dir, _IMAGE_SUFFIXES, ".jpg")

    def label_table(self, kind: str) -> np.ndarray:
        """reduce_zero_label: 0 → ignored, 1..150 → 0..149."""
        table = np.full(256, INVALID, dtype=np.int16)
        table[0] = self.ignore_index
        table[1 : self.num_classes + 1] = np.arange(self.num_classes)
        return table

    def describe_values(self, kind: str) -> str:
        return f"0 (other, ignored) and classes 1..{self.num_classes}"
