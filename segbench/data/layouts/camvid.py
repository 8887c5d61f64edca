"""CamVid as SegNet prepared it: ``{train,val,test}/`` images and ``{split}annot/`` masks.

Masks store 0..10 for the 11 classes and 11 for "Unlabelled" (void), which
becomes the ignore label, as SegNet and the papers that follow it evaluate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segbench.data.classes import CAMVID_VOID
from segbench.data.layouts.base import IMAGE_SUFFIXES, Layout, Listing, index_table, listing_by_stem


class CamVid(Layout):
    def locate(self, root: Path) -> Path:
        nested = root / "CamVid"
        return nested if nested.is_dir() and not (root / "train").is_dir() else root

    def has_split(self, split: str) -> bool:
        return (self.root / split).is_dir()

    def list_split(self, split: str) -> Listing:
        image_dir = self.require_dir(self.root / split, f"the {split} images")
        mask_dir = self.require_dir(self.root / f"{split}annot", f"the {split} masks")
        return listing_by_stem(split, image_dir, mask_dir, IMAGE_SUFFIXES, ".png")

    def label_table(self, kind: str) -> np.ndarray:
        table = index_table(self.num_classes, self.ignore_index)
        table[CAMVID_VOID] = self.ignore_index
        return table

    def describe_values(self, kind: str) -> str:
        return f"classes 0..{self.num_classes - 1} and {CAMVID_VOID} (void, ignored)"
