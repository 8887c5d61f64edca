"""What every on-disk layout shares: the root, image/mask pairs, label decoding, precise errors.

A :class:`Layout` answers three questions about a tree on disk: which
``(image, mask)`` pairs make up a split (and which files are unpaired), how a
mask file's raw values become train ids (a 256-entry look-up table; values a
dataset never writes are errors, not silently wrong classes), and how to say
what is missing: every error names the path it expected, the layout under the
root and where the data comes from. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segbench.data.catalog import DatasetEntry
from segbench.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
INVALID = -1  # look-up table entry of a raw value the dataset never writes


@dataclass(frozen=True)
class Pair:
    """One sample on disk; ``kind`` tells the layout how to decode the mask (e.g. labelIds)."""

    image: Path
    mask: Path
    kind: str = ""


@dataclass
class Listing:
    """A split's pairs, plus the files that have no partner (each a readable sentence)."""

    split: str
    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Layout(ABC):
    """The tree of one dataset under ``root``; subclasses know their dataset's conventions."""

    def __init__(self, entry: DatasetEntry, root: Path, options: Mapping[str, Any]) -> None:
        self.entry = entry
        self.options = dict(options)
        self.root = self.locate(root)

    # --- what the dataset is -------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        return self.entry.class_names

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.entry.palette

    @property
    def ignore_index(self) -> int:
        return self.entry.ignore_index

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # --- where the files are -------------------------------------------------------------
    def locate(self, root: Path) -> Path:
        """The dataset's own folder under ``root`` (layouts accept a parent folder too)."""
        return root

    @abstractmethod
    def list_split(self, split: str) -> Listing:
        """The pairs of ``split``; UserError when a folder or list file the split needs is missing."""

    @abstractmethod
    def has_split(self, split: str) -> bool:
        """Whether the tree holds ``split`` at all (optional splits are only checked when present)."""

    # --- how labels decode ---------------------------------------------------------------
    @abstractmethod
    def label_table(self, kind: str) -> np.ndarray:
        """``int16 [256]``: raw mask value → train id, ``ignore_index``, or ``INVALID``."""

    def read_raw_mask(self, pair: Pair) -> np.ndarray:
        return read_index_png(pair.mask)

    def read_mask(self, pair: Pair) -> np.ndarray:
        """``uint8 [H, W]`` train ids with ``ignore_index``; values outside the classes are UserErrors."""
        raw = self.read_raw_mask(pair)
        return decode_labels(raw, self.label_table(pair.kind), pair.mask, self.describe_values(pair.kind))

    def describe_values(self, kind: str) -> str:
        """The raw values a mask may hold, for the out-of-range error."""
        return f"class indices 0..{self.num_classes - 1} and {self.ignore_index} (ignored)"

    # --- errors --------------------------------------------------------------------------
    def missing(self, path: Path, what: str) -> UserError:
        """'<what> not found: expected <path>', with the layout and the data's origin."""
        return UserError(
            f"dataset '{self.entry.name}': {what} not found: expected {path}\n{self.entry.describe_layout()}"
        )

    def require_dir(self, path: Path, what: str) -> Path:
        if not path.is_dir():
            raise self.missing(path, what)
        return path

    def require_file(self, path: Path, what: str) -> Path:
        if not path.is_file():
            raise self.missing(path, what)
        return path


def read_index_png(path: Path) -> np.ndarray:
    """A label PNG as its stored indices (palette PNGs are *not* converted to colours)."""
    with Image.open(path) as image:
        if image.mode == "1":
            image = image.convert("L")
        if image.mode not in ("P", "L", "I", "I;16"):
            raise UserError(
                f"{path}: mask is a {image.mode} image; masks must hold one class index per pixel "
                "(a greyscale or palette PNG), not colours"
            )
        return np.asarray(image)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as ``uint8 [H, W, 3]``."""
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))  # a writable copy: torch.from_numpy needs one


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file header, without decoding the pixels."""
    with Image.open(path) as image:
        return image.height, image.width


def decode_labels(raw: np.ndarray, table: np.ndarray, path: Path, allowed: str) -> np.ndarray:
    """Raw mask values → train ids through ``table``; any ``INVALID`` value is a UserError naming them."""
    if raw.dtype != np.uint8:
        if raw.size and (int(raw.min()) < 0 or int(raw.max()) > 255):
            values = np.unique(raw[(raw < 0) | (raw > 255)])
            raise _bad_values(path, values, allowed)
        raw = raw.astype(np.uint8)
    decoded = table[raw]
    bad = decoded == INVALID
    if bad.any():
        raise _bad_values(path, np.unique(raw[bad]), allowed)
    return decoded.astype(np.uint8)


def _bad_values(path: Path, values: np.ndarray, allowed: str) -> UserError:
    shown = ", ".join(str(int(v)) for v in values[:12]) + (" ..." if len(values) > 12 else "")
    return UserError(
        f"{path}: label values outside the classes: {shown}; this dataset's masks hold {allowed}"
    )


def index_table(valid: int, ignore_index: int = 255) -> np.ndarray:
    """The identity table for masks that store ``0..valid-1`` and ``ignore_index`` directly."""
    table = np.full(256, INVALID, dtype=np.int16)
    table[:valid] = np.arange(valid)
    table[ignore_index] = ignore_index
    return table


def files_by_key(
    directory: Path, suffixes: Iterable[str], key: Callable[[str], str | None]
) -> dict[str, Path]:
    """Files in ``directory`` with one of ``suffixes``, by ``key(file name)`` (None skips a file)."""
    suffixes = tuple(s.lower() for s in suffixes)
    found: dict[str, Path] = {}
    with os.scandir(directory) as entries:
        for item in entries:
            if item.is_file() and item.name.lower().endswith(suffixes):
                name_key = key(item.name)
                if name_key is not None:
                    found[name_key] = Path(item.path)
    return found


def pair_up(
    images: Mapping[str, Path],
    masks: Mapping[str, Path],
    expected_mask: Callable[[str], Path],
    expected_image: Callable[[str], Path],
    kind: str = "",
) -> tuple[list[Pair], list[str]]:
    """Pairs for keys present on both sides; every one-sided file becomes a problem sentence."""
    pairs = [Pair(images[k], masks[k], kind) for k in sorted(images) if k in masks]
    problems = [
        f"unpaired image {images[k]}: no mask at {expected_mask(k)}" for k in sorted(images) if k not in masks
    ]
    problems += [
        f"unpaired mask {masks[k]}: no image at {expected_image(k)}" for k in sorted(masks) if k not in images
    ]
    return pairs, problems


def listing_by_stem(
    split: str, image_dir: Path, mask_dir: Path, image_suffixes: Iterable[str], image_shown: str
) -> Listing:
    """A split whose images and ``.png`` masks share file stems in two folders (ADE20K, CamVid, folder).

    ``image_shown`` is the suffix an error shows for a missing image (``.jpg``, ``.<jpg|png>``).
    """
    images = files_by_key(image_dir, image_suffixes, lambda name: Path(name).stem)
    masks = files_by_key(mask_dir, (".png",), lambda name: Path(name).stem)
    pairs, problems = pair_up(
        images, masks, lambda key: mask_dir / f"{key}.png", lambda key: image_dir / f"{key}{image_shown}"
    )
    return Listing(split, pairs, problems)


def read_list_file(path: Path) -> list[str]:
    """Non-empty, stripped lines of a split list file."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def strip_suffix(name: str, suffix: str) -> str | None:
    """``name`` without ``suffix`` (case-insensitive), or None when it does not end with it."""
    return name[: -len(suffix)] if name.lower().endswith(suffix.lower()) else None


def open_layout(entry: DatasetEntry, root: str | Path | None, options: Mapping[str, Any]) -> Layout:
    """The layout reader of an on-disk dataset, at ``root`` or ``$SEGBENCH_DATA/<name>``."""
    from segbench.plugins import load_object

    layout_class = load_object(entry.loader)
    return layout_class(entry, entry.resolve_root(root), options)
