"""The embedded diagnostic dataset: scenes generated on the fly, deterministic in (seed, split, index).

Nothing is stored: sample ``i`` of a split is rendered from a generator seeded by
``(seed, split, i)``, so every worker, run and machine sees the same scene, and
the val split (its own seed stream) never repeats a train scene. See
:mod:`segbench.data.scene` for what the scenes contain and why.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from segbench.data.classes import DIAGNOSTIC_CLASSES, DIAGNOSTIC_PALETTE
from segbench.data.scene import CONTEXT_CLASSES, IGNORE_INDEX, LAMP, POLE, noise_bank, render_scene
from segbench.data.transforms import TrainAugment, evaluation_sample, train_sample
from segbench.errors import UserError
from segbench.evidence import Control

_SPLIT_STREAM = {"train": 0, "val": 1}


class DiagnosticDataset(Dataset[tuple[Tensor, Tensor]]):
    """``(image float32 [3, S, S] normalised, mask int64 [S, S])`` samples of synthetic scenes."""

    num_classes = len(DIAGNOSTIC_CLASSES)
    class_names = DIAGNOSTIC_CLASSES
    palette = DIAGNOSTIC_PALETTE
    ignore_index = IGNORE_INDEX
    #: the positive controls (docs/diagnostic.md): each factor's effect, measured where it decides
    controls = (
        Control("context_miou", CONTEXT_CLASSES, region=CONTEXT_CLASSES),  # car or boat? only the scene says
        Control("small_iou", (LAMP,)),  # objects 1/32 to 1/12 of the image wide
        Control("thin_iou", (POLE,)),  # structures 2-4 px across
    )

    def __init__(
        self,
        split: str,
        *,
        size: int = 128,
        train_length: int = 2000,
        val_length: int = 200,
        noise: float = 0.08,
        seed: int = 0,
        augment: TrainAugment | None = None,
    ) -> None:
        if split not in _SPLIT_STREAM:
            raise UserError(f"dataset 'diagnostic' has no split '{split}'; splits: train, val")
        self.split = split
        self.size = size
        self.noise = noise
        self.seed = seed
        self.augment = augment
        self.length = train_length if split == "train" else val_length
        self._stream = _SPLIT_STREAM[split]

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw scene: ``(image float32 [3, S, S] in [0, 1], labels uint8 [S, S])``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} {self.split} samples")
        # The same PCG64(SeedSequence([seed, split, index])) stream as spelling the three out, a few µs sooner.
        rng = np.random.default_rng([self.seed, self._stream, index])
        # The bank is cached per process, so workers build it once (a few ms) and share nothing.
        bank = noise_bank(self.size, self.seed, float(self.noise)) if self.noise > 0 else None
        return render_scene(rng, self.size, bank)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image_np, labels_np = self.scene(index)
        image = torch.from_numpy(image_np)
        mask = torch.from_numpy(labels_np).long()
        if self.augment is None:
            return evaluation_sample(image, mask)
        return train_sample(image, mask, self.augment, self.ignore_index)
