"""PASCAL VOC 2012 segmentation, and the SBD-augmented "trainaug" set (10,582 images).

VOC's masks are palette PNGs: the stored indices *are* the classes (0..20, 255 on
object outlines and difficult regions), so they are read as indices, never as
colours. ``trainaug`` is the set DeepLab and PSPNet train on: SBD's train and val
images plus VOC's train images, minus VOC's val images. Its masks come from, in
order of preference: ``SegmentationClassAug/<id>.png`` (SBD converted to PNG, as
widely distributed), VOC's own ``SegmentationClass/<id>.png``, or SBD's
``cls/<id>.mat`` (``GTcls.Segmentation``, read with scipy) under option ``sbd_root``.
Every SBD image is also in VOC 2012's ``JPEGImages/``, so images always come from there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from segbench.data.layouts.base import Layout, Listing, Pair, index_table, read_list_file
from segbench.errors import UserError


class VOC2012(Layout):
    def locate(self, root: Path) -> Path:
        # Accept VOCdevkit/ (as the tarball unpacks) as well as VOCdevkit/VOC2012/ itself.
        nested = root / "VOC2012"
        return nested if nested.is_dir() and not (root / "JPEGImages").is_dir() else root

    @property
    def sets_dir(self) -> Path:
        return self.root / "ImageSets" / "Segmentation"

    @property
    def aug_dir(self) -> Path:
        return self.root / "SegmentationClassAug"

    @property
    def sbd_root(self) -> Path | None:
        value = self.options.get("sbd_root")
        return Path(value).expanduser() if value else None

    def has_split(self, split: str) -> bool:
        if split == "trainaug":
            return (
                (self.sets_dir / "trainaug.txt").is_file()
                or self.aug_dir.is_dir()
                or self.sbd_root is not None
            )
        return (self.sets_dir / f"{split}.txt").is_file()

    def list_split(self, split: str) -> Listing:
        if split == "trainaug":
            return self._trainaug()
        ids = self._ids(split)
        seg = self.require_dir(self.root / "SegmentationClass", "the masks folder SegmentationClass/")
        return self._pairs(split, ids, lambda i: seg / f"{i}.png", self.sets_dir / f"{split}.txt")

    def label_table(self, kind: str) -> np.ndarray:
        return index_table(self.num_classes, self.ignore_index)

    def read_raw_mask(self, pair: Pair) -> np.ndarray:
        if pair.mask.suffix == ".mat":
            return read_sbd_mat(pair.mask)
        return super().read_raw_mask(pair)

    def _ids(self, split: str) -> list[str]:
        return read_list_file(self.require_file(self.sets_dir / f"{split}.txt", f"the {split} split list"))

    def _pairs(self, split: str, ids: list[str], mask_of: Callable[[str], Path], listed_in: Path) -> Listing:
        images = self.require_dir(self.root / "JPEGImages", "the images folder JPEGImages/")
        listing = Listing(split)
        for sample_id in ids:
            image = images / f"{sample_id}.jpg"
            mask = mask_of(sample_id)
            if not image.is_file():
                listing.problems.append(
                    f"{listed_in.name} lists '{sample_id}' but its image {image} is missing"
                )
            elif not mask.is_file():
                listing.problems.append(
                    f"{listed_in.name} lists '{sample_id}' but its mask {mask} is missing"
                )
            else:
                listing.pairs.append(Pair(image, mask))
        return listing

    def _trainaug(self) -> Listing:
        val = set(self._ids("val"))
        list_file = self.sets_dir / "trainaug.txt"
        sbd = self.sbd_root
        if sbd is not None:
            self.require_dir(sbd / "cls", "SBD's masks folder cls/ (option sbd_root)")
        if list_file.is_file():
            ids = read_list_file(list_file)
        elif sbd is not None:
            sbd_ids = read_list_file(
                self.require_file(sbd / "train.txt", "SBD's train.txt (option sbd_root)")
            )
            sbd_ids += read_list_file(self.require_file(sbd / "val.txt", "SBD's val.txt (option sbd_root)"))
            ids = sorted((set(sbd_ids) | set(self._ids("train"))) - val)
        elif self.aug_dir.is_dir():
            ids = sorted({p.stem for p in self.aug_dir.glob("*.png")} - val)
        else:
            raise self.missing(
                self.aug_dir,
                "SBD's masks for split 'trainaug' (SegmentationClassAug/, or option sbd_root "
                "= SBD's benchmark_RELEASE/dataset with cls/, train.txt, val.txt)",
            )
        leaked = sorted(set(ids) & val)
        if leaked:
            raise UserError(
                f"dataset 'voc2012': {list_file} lists {len(leaked)} val image(s) (e.g. '{leaked[0]}'); "
                "trainaug must exclude VOC val, or val scores are inflated"
            )
        seg = self.root / "SegmentationClass"

        def mask_of(sample_id: str) -> Path:
            candidates = [self.aug_dir / f"{sample_id}.png", seg / f"{sample_id}.png"]
            if sbd is not None:
                candidates.append(sbd / "cls" / f"{sample_id}.mat")
            return next((c for c in candidates if c.is_file()), candidates[0])

        return self._pairs("trainaug", ids, mask_of, list_file)


def read_sbd_mat(path: Path) -> np.ndarray:
    """SBD's class mask: ``GTcls.Segmentation`` of a MATLAB file (values 0..20)."""
    from scipy.io import loadmat

    try:
        segmentation = loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"].Segmentation
    except (KeyError, AttributeError, ValueError, OSError) as exc:
        raise UserError(
            f"{path}: not an SBD class mask (expected a struct GTcls with a field Segmentation): {exc}"
        ) from None
    return np.asarray(segmentation)
