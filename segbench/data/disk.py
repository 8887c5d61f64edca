"""The torch dataset over an on-disk layout: files → normalised image tensor and train-id mask.

Building it lists the split and refuses a broken tree (a listed file that is
missing, an image without a mask) with every problem named, so a job fails in
its first second rather than at iteration 3,000. Per-sample problems that only
reading reveals (an image and mask of different sizes, label values outside
the classes) are UserErrors naming the file.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from segbench.data.layouts.base import Layout, Pair, read_rgb
from segbench.data.transforms import TrainAugment, evaluation_sample, to_unit_image, train_sample
from segbench.errors import UserError

_SHOWN_PROBLEMS = 10


class DiskDataset(Dataset[tuple[Tensor, Tensor]]):
    """``(image float32 [3, H, W] normalised, mask int64 [H, W])`` pairs of one split on disk."""

    def __init__(self, layout: Layout, split: str, augment: TrainAugment | None = None) -> None:
        listing = layout.list_split(split)
        name = layout.entry.name
        if listing.problems:
            shown = "\n  ".join(listing.problems[:_SHOWN_PROBLEMS])
            more = len(listing.problems) - _SHOWN_PROBLEMS
            raise UserError(
                f"dataset '{name}' split '{split}' under {layout.root} has {len(listing.problems)} "
                f"problem(s):\n  {shown}"
                + (f"\n  ... and {more} more" if more > 0 else "")
                + f"\n`segbench datasets check {name} --root {layout.root}` lists them all."
                + f"\n{layout.entry.describe_layout()}"
            )
        if not listing.pairs:
            raise UserError(
                f"dataset '{name}' split '{split}' under {layout.root} has no images.\n"
                f"{layout.entry.describe_layout()}"
            )
        self.layout = layout
        self.split = split
        self.pairs: list[Pair] = listing.pairs
        self.augment = augment
        self.num_classes = layout.num_classes
        self.class_names = layout.class_names
        self.palette = layout.palette
        self.ignore_index = layout.ignore_index

    def __len__(self) -> int:
        return len(self.pairs)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 [H, W, 3], train ids uint8 [H, W])`` of one pair, sizes checked."""
        pair = self.pairs[index]
        image = read_rgb(pair.image)
        mask = self.layout.read_mask(pair)
        if image.shape[:2] != mask.shape:
            raise UserError(
                f"image {pair.image} is {image.shape[1]}×{image.shape[0]} but its mask {pair.mask} is "
                f"{mask.shape[1]}×{mask.shape[0]}; an image and its mask must be the same size"
            )
        return image, mask

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image_np, mask_np = self.read(index)
        image = to_unit_image(image_np)
        mask = torch.from_numpy(mask_np.astype(np.int64))
        if self.augment is None:
            return evaluation_sample(image, mask)
        return train_sample(image, mask, self.augment, self.ignore_index)
