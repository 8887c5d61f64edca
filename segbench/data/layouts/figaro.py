"""Figaro-1k: hair vs background, the data of the PSPNet review's experiment.

The release has ``Original/{Training,Testing}/FrameNNNNN-org.jpg`` and binary
ground truth ``GT/{Training,Testing}/FrameNNNNN-gt.pbm`` (some copies ship
``.png``). Masks are read as greyscale and thresholded at half intensity, so a
0/1, 0/255 or even JPEG-compressed mask all give hair = 1, background = 0.
There is no validation set: ``val`` is the 210-image Testing set, as the
reference experiments evaluate on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from segbench.data.layouts.base import IMAGE_SUFFIXES, Layout, Listing, Pair, files_by_key, pair_up

_SUBSETS = {"train": "Training", "val": "Testing"}
_MASK_SUFFIXES = (".pbm", ".png", ".bmp", ".jpg")


def _frame_key(name: str, marker: str) -> str | None:
    stem = Path(name).stem
    return stem[: -len(marker)] if stem.lower().endswith(marker) else None


class Figaro1k(Layout):
    def locate(self, root: Path) -> Path:
        nested = root / "Figaro1k"
        return nested if nested.is_dir() and not (root / "Original").is_dir() else root

    def has_split(self, split: str) -> bool:
        return (self.root / "Original" / _SUBSETS[split]).is_dir()

    def list_split(self, split: str) -> Listing:
        subset = _SUBSETS[split]
        image_dir = self.require_dir(self.root / "Original" / subset, f"the {split} images")
        mask_dir = self.require_dir(self.root / "GT" / subset, f"the {split} ground truth")
        images = files_by_key(image_dir, IMAGE_SUFFIXES, lambda name: _frame_key(name, "-org"))
        masks = files_by_key(mask_dir, _MASK_SUFFIXES, lambda name: _frame_key(name, "-gt"))
        pairs, problems = pair_up(
            images, masks, lambda key: mask_dir / f"{key}-gt.pbm", lambda key: image_dir / f"{key}-org.jpg"
        )
        return Listing(split, pairs, problems)

    def read_raw_mask(self, pair: Pair) -> np.ndarray:
        with Image.open(pair.mask) as image:
            return np.asarray(image.convert("L"))

    def label_table(self, kind: str) -> np.ndarray:
        """Greyscale → {0, 1} at half intensity; every value is valid."""
        return (np.arange(256) >= 128).astype(np.int16)
