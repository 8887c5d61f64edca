"""Validate a dataset tree on disk: what ``segbench datasets check NAME --root DIR`` reports.

Unlike building a dataset (which stops at the first broken split), a check
reads *everything* and collects every problem: per split, the number of pairs,
files without a partner, images and masks of different sizes, and label values
outside the class range (read through the same decoding the loader uses, so
Cityscapes label ids and ADE20K's zero label are judged as training sees them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segbench.data.catalog import get_dataset_entry
from segbench.data.layouts.base import Layout, image_size, open_layout
from segbench.errors import UserError

REQUIRED_SPLITS = ("train", "val")


@dataclass
class CheckReport:
    dataset: str
    root: Path
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def check_tree(
    name: str,
    root: str | Path | None,
    split: str | None = None,
    options: Mapping[str, Any] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> CheckReport:
    """Check ``split`` (default: train, val and every optional split the tree has) of ``name`` at ``root``."""
    entry = get_dataset_entry(name)
    if entry.generated:
        raise UserError(f"dataset '{name}' is generated on the fly; there is no tree on disk to check")
    layout = open_layout(entry, root, entry.resolve(dict(options or {})))
    if split is not None:
        entry.check_split(split)
        splits = [split]
    else:
        splits = [s for s in entry.splits if s in REQUIRED_SPLITS or layout.has_split(s)]
    report = CheckReport(name, layout.root)
    for each in splits:
        _check_split(layout, each, report, on_progress)
    return report


def _check_split(
    layout: Layout, split: str, report: CheckReport, on_progress: Callable[[str, int, int], None] | None
) -> None:
    try:
        listing = layout.list_split(split)
    except UserError as exc:
        report.problems.append(f"[{split}] {str(exc).splitlines()[0]}")
        return
    report.counts[split] = len(listing.pairs)
    report.problems.extend(f"[{split}] {problem}" for problem in listing.problems)
    total = len(listing.pairs)
    for done, pair in enumerate(listing.pairs, start=1):
        if on_progress is not None:
            on_progress(split, done, total)
        try:
            height, width = image_size(pair.image)
            mask = layout.read_mask(pair)
        except UserError as exc:
            report.problems.append(f"[{split}] {exc}")
            continue
        except OSError as exc:  # PIL: truncated or not an image at all
            report.problems.append(f"[{split}] cannot read {pair.image} / {pair.mask}: {exc}")
            continue
        if mask.shape != (height, width):
            report.problems.append(
                f"[{split}] size mismatch: image {pair.image} is {width}×{height}, "
                f"mask {pair.mask} is {mask.shape[1]}×{mask.shape[0]}"
            )
