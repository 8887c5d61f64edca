"""The training data stream: resumable shuffled batches across epochs.

The batch of any iteration is a pure function of ``(seed, iteration)``: epoch
``e`` is a permutation drawn from a generator seeded by ``(seed, e)``, batches
drop the incomplete remainder. A run resumed at iteration ``k`` therefore sees
exactly the batches an uninterrupted run sees from ``k`` on, without loading
(or replaying the randomness of) the ones before it. One DataLoader spans all
epochs, so worker processes start once per run, not once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from segbench.engine.reproducibility import derived_seed, seed_worker
from segbench.errors import UserError
from segbench.lifeline import die_with_parent


class ResumableBatchSampler(Sampler[list[int]]):
    """Index batches for iterations ``start .. total - 1`` of a shuffled, drop-last stream."""

    def __init__(self, num_items: int, batch_size: int, seed: int, start: int, total: int):
        if num_items < batch_size:
            raise UserError(
                f"the training set has {num_items} samples, fewer than train.batch_size={batch_size} "
                "(batches drop the incomplete remainder)"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.batches_per_epoch = num_items // batch_size
        self.seed = seed
        self.start = start
        self.total = total

    def __len__(self) -> int:
        return max(self.total - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, order = -1, torch.empty(0, dtype=torch.int64)
        for iteration in range(self.start, self.total):
            e, b = divmod(iteration, self.batches_per_epoch)
            if e != epoch:
                generator = torch.Generator().manual_seed(derived_seed(self.seed, e))
                epoch, order = e, torch.randperm(self.num_items, generator=generator)
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


def collate_pairs(batch: Sequence[Sequence[Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack ``(image, mask)`` samples; differing sizes are a clear error, not a torch trace."""
    images = [sample[0] for sample in batch]
    masks = [sample[1] for sample in batch]
    image_sizes = sorted({tuple(t.shape) for t in images})
    mask_sizes = sorted({tuple(t.shape) for t in masks})
    if len(image_sizes) > 1 or len(mask_sizes) > 1:
        raise UserError(
            f"training samples in one batch differ in size (images {image_sizes}, masks {mask_sizes}); "
            "set train.crop_size so every sample is cropped to one size"
        )
    return torch.stack(images), torch.stack(masks)


def _init_worker(worker_id: int) -> None:
    """A loader worker is seeded like the rest, and dies with the training process that forked it.

    (``fork`` clears the death signal, so it is set again here: a segbench worker
    killed outright must not leave its loader workers behind.)
    """
    seed_worker(worker_id)
    die_with_parent()


def training_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    start: int,
    total: int,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader yielding the batches of iterations ``start .. total - 1``.

    The loader's own generator (which seeds worker processes) is derived from
    ``(seed, start)``, so creating it never consumes the global generator whose
    state a checkpoint restores.
    """
    sampler = ResumableBatchSampler(len(dataset), batch_size, seed, start, total)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_pairs,
        pin_memory=pin_memory,
        worker_init_fn=_init_worker,
        generator=torch.Generator().manual_seed(derived_seed(seed, start)),
    )
