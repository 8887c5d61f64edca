"""Datasets: the embedded diagnostic scenes and the real benchmarks' on-disk layouts.

``build_dataset(name, split, root=..., augment=...)`` is the one entry point the
runner uses. This package imports torch, numpy and PIL only inside it, because
``segbench list datasets`` and suite validation import the catalog
(:mod:`segbench.data.catalog`) through this package and must stay instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segbench.data.catalog import (
    DatasetEntry,
    dataset_entries,
    get_dataset_entry,
    resolve_dataset_options,
)
from segbench.errors import UserError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from segbench.data.transforms import TrainAugment

__all__ = ["DatasetEntry", "build_dataset", "dataset_entries", "get_dataset_entry", "resolve_dataset_options"]


def build_dataset(
    name: str,
    split: str,
    *,
    root: str | Path | None = None,
    augment: TrainAugment | None = None,
    **options: Any,
) -> Dataset:
    """The ``split`` of dataset ``name`` as a torch ``Dataset`` of ``(image, mask)``.

    ``image`` is ``float32 [3, H, W]`` normalised with the ImageNet mean/std,
    ``mask`` is ``int64 [H, W]`` with ``ignore_index`` (255) on ignored pixels.
    ``augment=None`` gives evaluation samples (original resolution), a
    :class:`~segbench.data.transforms.TrainAugment` training samples. ``root``
    falls back to ``$SEGBENCH_DATA/<name>``; the diagnostic dataset has none.
    The dataset carries ``num_classes``, ``class_names``, ``ignore_index``, ``palette``.
    """
    entry = get_dataset_entry(name)
    resolved = entry.resolve(options)
    entry.check_split(split)
    if entry.generated:
        if root is not None:
            raise UserError(
                f"dataset '{name}' is generated on the fly and reads no files; remove its root ({root})"
            )
        from segbench.data.diagnostic import DiagnosticDataset

        return DiagnosticDataset(split, augment=augment, **resolved)
    from segbench.data.disk import DiskDataset
    from segbench.data.layouts.base import open_layout

    return DiskDataset(open_layout(entry, root, resolved), split, augment)
