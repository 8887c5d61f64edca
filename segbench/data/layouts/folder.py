"""A user's own dataset: images, index masks and a class list, in one of two simple trees.

::

    root/classes.yaml                      [road, car, person]   or
                                           {classes: [road, car], palette: [[128, 64, 128], [0, 0, 142]]}
    root/images/<split>/<name>.jpg|png     + root/masks/<split>/<name>.png      (split folders), or
    root/images/<name>.jpg + root/masks/<name>.png + root/<split>.txt           (list files)

A list file holds one name per line (``images/<name>.*`` with ``masks/<name>.png``),
or two paths per line relative to the root (``image mask``). Masks store one
class index per pixel (greyscale or palette PNG), 255 for ignored pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from segbench.data.catalog import DatasetEntry
from segbench.data.classes import RGB, voc_colormap
from segbench.data.layouts.base import (
    IMAGE_SUFFIXES,
    Layout,
    Listing,
    Pair,
    files_by_key,
    index_table,
    listing_by_stem,
    read_list_file,
)
from segbench.errors import UserError


class Folder(Layout):
    def __init__(self, entry: DatasetEntry, root: Path, options: Mapping[str, Any]) -> None:
        super().__init__(entry, root, options)
        self._class_names, self._palette = self._read_classes()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    @property
    def palette(self) -> tuple[RGB, ...]:
        return self._palette

    def has_split(self, split: str) -> bool:
        return (self.root / f"{split}.txt").is_file() or (self.root / "images" / split).is_dir()

    def list_split(self, split: str) -> Listing:
        list_file = self.root / f"{split}.txt"
        if list_file.is_file():
            return self._from_list(split, list_file)
        image_dir = self.root / "images" / split
        if not image_dir.is_dir():
            raise self.missing(
                image_dir, f"split '{split}' (neither the list file {list_file.name} nor a folder)"
            )
        mask_dir = self.require_dir(self.root / "masks" / split, f"the {split} masks")
        return listing_by_stem(split, image_dir, mask_dir, IMAGE_SUFFIXES, ".<jpg|png>")

    def label_table(self, kind: str) -> np.ndarray:
        return index_table(self.num_classes, self.ignore_index)

    def _from_list(self, split: str, list_file: Path) -> Listing:
        listing = Listing(split)
        image_dir, mask_dir = self.root / "images", self.root / "masks"
        images: dict[str, Path] | None = None
        for number, line in enumerate(read_list_file(list_file), start=1):
            fields = line.split()
            if len(fields) == 2:
                image, mask = self.root / fields[0], self.root / fields[1]
            elif len(fields) == 1:
                if images is None:
                    images = files_by_key(
                        self.require_dir(image_dir, "the images folder images/"),
                        IMAGE_SUFFIXES,
                        lambda name: Path(name).stem,
                    )
                image = images.get(fields[0], image_dir / f"{fields[0]}.<jpg|png>")
                mask = mask_dir / f"{fields[0]}.png"
            else:
                raise UserError(
                    f"{list_file}:{number}: expected a name or 'image_path mask_path', got {line!r}"
                )
            if not image.is_file():
                listing.problems.append(f"{list_file.name}:{number}: image {image} is missing")
            elif not mask.is_file():
                listing.problems.append(f"{list_file.name}:{number}: mask {mask} is missing")
            else:
                listing.pairs.append(Pair(image, mask))
        return listing

    def _read_classes(self) -> tuple[tuple[str, ...], tuple[RGB, ...]]:
        path = self.require_file(
            self.root / self.options.get("classes_file", "classes.yaml"), "the class list"
        )
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML: {exc}") from None
        palette_data = None
        if isinstance(data, dict):
            unknown = set(data) - {"classes", "palette"}
            if unknown:
                raise UserError(
                    f"{path}: unknown key(s) {sorted(unknown)}; a class list has 'classes' and 'palette'"
                )
            data, palette_data = data.get("classes"), data.get("palette")
        if not isinstance(data, list) or not data or not all(isinstance(n, str) and n for n in data):
            raise UserError(f"{path}: expected a non-empty list of class names (or a mapping with 'classes')")
        if len(data) >= self.ignore_index:
            raise UserError(
                f"{path}: {len(data)} classes; at most {self.ignore_index} fit an 8-bit mask with 255 ignored"
            )
        names = tuple(data)
        if palette_data is None:
            return names, voc_colormap(len(names))
        if (
            not isinstance(palette_data, list)
            or len(palette_data) != len(names)
            or not all(
                isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                for c in palette_data
            )
        ):
            raise UserError(
                f"{path}: palette must list one [r, g, b] (0..255) per class ({len(names)} classes)"
            )
        return names, tuple((c[0], c[1], c[2]) for c in palette_data)
