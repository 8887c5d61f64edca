"""The real datasets' layouts: miniature trees on disk, loaded through ``build_dataset``.

Each ``make_*`` builds a tree in the dataset's published layout from a few
generated PNGs (≤ 32 px), with masks whose raw values exercise the dataset's
label conventions; the tests read them back exactly as training does. The
builders are imported by ``test_data_cli.py`` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from segbench.data import build_dataset
from segbench.data.classes import VOC_PALETTE
from segbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from segbench.errors import UserError

H, W = 12, 16


# --- tree builders -------------------------------------------------------------------------
def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (H, W), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def write_mask(path: Path, values: np.ndarray, palette: Sequence[tuple[int, int, int]] | None = None) -> Path:
    """An 8-bit index mask; a palette PNG (mode P) when ``palette`` is given, as VOC stores them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.uint8), mode="L")
    if palette is not None:
        image = image.convert("P")
        flat = [v for colour in palette for v in colour]
        image.putpalette(flat + [224, 224, 192] * (256 - len(palette)))
        image.putdata(values.astype(np.uint8).ravel().tolist())
    image.save(path)
    return path


def stripes(values: Sequence[int], size: tuple[int, int] = (H, W)) -> np.ndarray:
    """A mask of vertical stripes cycling through ``values`` (every value present)."""
    cols = np.arange(size[1]) % len(values)
    return np.broadcast_to(np.asarray(values, dtype=np.uint8)[cols], size).copy()


def make_voc(base: Path, train: Sequence[str] = ("t1", "t2"), val: Sequence[str] = ("v1",)) -> Path:
    """``base/VOCdevkit/VOC2012`` with palette-PNG masks; returns ``base/VOCdevkit``."""
    voc = base / "VOCdevkit" / "VOC2012"
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(train) + "\n")
    (sets / "val.txt").write_text("\n".join(val) + "\n")
    (sets / "trainval.txt").write_text("\n".join([*train, *val]) + "\n")
    for i, sample_id in enumerate([*train, *val]):
        write_image(voc / "JPEGImages" / f"{sample_id}.jpg", seed=i)
        write_mask(voc / "SegmentationClass" / f"{sample_id}.png", stripes([0, 15, 255, 20]), VOC_PALETTE)
    return base / "VOCdevkit"


def make_cityscapes(base: Path, train_ids: bool = False) -> Path:
    root = base / "cityscapes"
    for split, city, frame in (("train", "aachen", "000000_000019"), ("val", "lindau", "000001_000019")):
        key = f"{city}_{frame}"
        write_image(root / "leftImg8bit" / split / city / f"{key}_leftImg8bit.png")
        write_mask(
            root / "gtFine" / split / city / f"{key}_gtFine_labelIds.png", stripes([7, 26, 0, 33, 4, 1])
        )
        if train_ids:
            write_mask(
                root / "gtFine" / split / city / f"{key}_gtFine_labelTrainIds.png", stripes([5, 255, 18])
            )
    return root


def make_ade20k(base: Path) -> Path:
    root = base / "ADEChallengeData2016"
    for subset, key in (("training", "ADE_train_00000001"), ("validation", "ADE_val_00000001")):
        write_image(root / "images" / subset / f"{key}.jpg")
        write_mask(root / "annotations" / subset / f"{key}.png", stripes([0, 1, 150, 75]))
    return base


def make_camvid(base: Path) -> Path:
    root = base / "camvid"
    for split in ("train", "val", "test"):
        write_image(root / split / "0001TP_006690.png")
        write_mask(root / f"{split}annot" / "0001TP_006690.png", stripes([0, 10, 11, 3]))
    return root


def make_figaro(base: Path) -> Path:
    root = base / "Figaro1k"
    hair = np.zeros((H, W), dtype=bool)
    hair[:, : W // 2] = True
    for subset, frame in (("Training", "Frame00001"), ("Testing", "Frame00002")):
        write_image(root / "Original" / subset / f"{frame}-org.jpg")
        (root / "GT" / subset).mkdir(parents=True)
        Image.fromarray(hair).save(root / "GT" / subset / f"{frame}-gt.pbm")  # mode "1", as released
    # Some copies ship greyscale PNG ground truth instead.
    write_image(root / "Original" / "Training" / "Frame00003-org.jpg")
    write_mask(root / "GT" / "Training" / "Frame00003-gt.png", hair.astype(np.uint8) * 255)
    return root


def make_folder(base: Path, classes: str = "[sky, car, person]\n") -> Path:
    root = base / "mydata"
    root.mkdir()
    (root / "classes.yaml").write_text(classes)
    for split in ("train", "val"):
        for name in ("a", "b"):
            write_image(root / "images" / split / f"{name}.jpg")
            write_mask(root / "masks" / split / f"{name}.png", stripes([0, 1, 2, 255]))
    return root


# --- helpers -----------------------------------------------------------------------------
def mask_of(dataset: torch.utils.data.Dataset, index: int = 0) -> np.ndarray:
    image, mask = dataset[index]
    assert image.dtype == torch.float32 and mask.dtype == torch.int64
    assert image.shape[0] == 3 and tuple(image.shape[1:]) == tuple(mask.shape)
    return mask.numpy()


def row(mask: np.ndarray) -> list[int]:
    """The label of each stripe (first row, one column per stripe value)."""
    return mask[0].tolist()


# --- VOC ---------------------------------------------------------------------------------
def test_voc_reads_palette_masks_as_class_indices(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    train = build_dataset("voc2012", "train", root=root)
    assert len(train) == 2 and train.num_classes == 21 and train.ignore_index == 255
    assert train.class_names[15] == "person" and train.palette[15] == (192, 128, 128)
    assert row(mask_of(train))[:4] == [0, 15, 255, 20]
    assert len(build_dataset("voc2012", "trainval", root=root / "VOC2012")) == 3  # the inner folder works too


def test_voc_image_is_normalised_with_imagenet_statistics(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    image, _ = build_dataset("voc2012", "val", root=root)[0]
    raw = np.asarray(Image.open(root / "VOC2012" / "JPEGImages" / "v1.jpg").convert("RGB"), dtype=np.float32)
    expected = (raw / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_voc_trainaug_from_sbd_mat_files(tmp_path: Path) -> None:
    root = make_voc(tmp_path, train=("t1", "t2"), val=("v1",))
    voc = root / "VOC2012"
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "train.txt").write_text("s1\ns2\nv1\n")  # SBD train overlaps VOC val: must be dropped
    (sbd / "val.txt").write_text("t1\n")
    segmentation = stripes([0, 7, 3])
    for sample_id in ("s1", "s2", "t1"):
        scipy.io.savemat(sbd / "cls" / f"{sample_id}.mat", {"GTcls": {"Segmentation": segmentation}})
        if sample_id != "t1":
            write_image(voc / "JPEGImages" / f"{sample_id}.jpg")

    aug = build_dataset("voc2012", "trainaug", root=root, sbd_root=str(sbd))
    ids = [pair.image.stem for pair in aug.pairs]
    assert ids == ["s1", "s2", "t1", "t2"]  # (SBD train ∪ SBD val ∪ VOC train) − VOC val
    assert row(mask_of(aug, 0))[:3] == [0, 7, 3]  # from cls/s1.mat
    assert row(mask_of(aug, 2))[:4] == [0, 15, 255, 20]  # VOC's own mask preferred for t1


def test_voc_trainaug_from_segmentation_class_aug(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    voc = root / "VOC2012"
    for sample_id in ("a1", "t1", "v1"):
        write_mask(voc / "SegmentationClassAug" / f"{sample_id}.png", stripes([1, 2]))
    write_image(voc / "JPEGImages" / "a1.jpg")
    aug = build_dataset("voc2012", "trainaug", root=root)
    assert [pair.image.stem for pair in aug.pairs] == ["a1", "t1"]  # every aug mask but VOC val
    assert row(mask_of(aug, 1))[:2] == [1, 2]  # SegmentationClassAug/ first


def test_voc_trainaug_without_sbd_says_what_to_provide(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    with pytest.raises(UserError) as err:
        build_dataset("voc2012", "trainaug", root=root)
    message = str(err.value)
    assert str(root / "VOC2012" / "SegmentationClassAug") in message
    assert "sbd_root" in message and "home.bharathh.info" in message


def test_voc_missing_split_file_names_the_path_and_the_source(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    (root / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(UserError) as err:
        build_dataset("voc2012", "val", root=root)
    message = str(err.value)
    assert str(root / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt") in message
    assert "host.robots.ox.ac.uk/pascal/VOC/voc2012" in message


def test_voc_listed_image_without_mask_is_named(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    (root / "VOC2012" / "SegmentationClass" / "t2.png").unlink()
    with pytest.raises(UserError) as err:
        build_dataset("voc2012", "train", root=root)
    assert f"its mask {root / 'VOC2012' / 'SegmentationClass' / 't2.png'} is missing" in str(err.value)


# --- Cityscapes --------------------------------------------------------------------------
def test_cityscapes_label_ids_map_to_train_ids(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path)
    train = build_dataset("cityscapes", "train", root=root)
    assert len(train) == 1 and train.num_classes == 19
    # road 7 → 0, car 26 → 13, unlabeled 0 → 255, bicycle 33 → 18, static 4 → 255, ego vehicle 1 → 255
    assert row(mask_of(train))[:6] == [0, 13, 255, 18, 255, 255]


def test_cityscapes_prefers_label_train_ids_unless_told(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path, train_ids=True)
    assert row(mask_of(build_dataset("cityscapes", "val", root=root)))[:3] == [5, 255, 18]
    forced = build_dataset("cityscapes", "val", root=root, labels="labelIds")
    assert row(mask_of(forced))[:2] == [0, 13]


def test_cityscapes_image_without_annotation_is_unpaired(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path)
    write_image(root / "leftImg8bit" / "train" / "aachen" / "aachen_000009_000019_leftImg8bit.png")
    with pytest.raises(UserError) as err:
        build_dataset("cityscapes", "train", root=root)
    expected = root / "gtFine" / "train" / "aachen" / "aachen_000009_000019_gtFine_labelIds.png"
    assert f"no mask at {expected}" in str(err.value)
    assert "cityscapes-dataset.com" in str(err.value)


def test_cityscapes_missing_gtfine_names_the_folder(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path)
    for path in sorted((root / "gtFine").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "gtFine").rmdir()
    with pytest.raises(UserError, match=f"expected {root / 'gtFine' / 'train'}"):
        build_dataset("cityscapes", "train", root=root)


# --- ADE20K ------------------------------------------------------------------------------
def test_ade20k_reduces_the_zero_label(tmp_path: Path) -> None:
    root = make_ade20k(tmp_path)
    val = build_dataset("ade20k", "val", root=root)  # the parent of ADEChallengeData2016/ works
    assert val.num_classes == 150 and val.class_names[0] == "wall"
    assert row(mask_of(val))[:4] == [255, 0, 149, 74]


def test_ade20k_label_above_150_names_the_file_and_values(tmp_path: Path) -> None:
    root = make_ade20k(tmp_path)
    bad = root / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png"
    write_mask(bad, stripes([0, 151, 200]))
    train = build_dataset("ade20k", "train", root=root)
    with pytest.raises(UserError) as err:
        train[0]
    assert str(bad) in str(err.value) and "151, 200" in str(err.value)


def test_ade20k_annotation_without_image_is_unpaired(tmp_path: Path) -> None:
    root = make_ade20k(tmp_path)
    orphan = root / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000002.png"
    write_mask(orphan, stripes([1]))
    with pytest.raises(UserError) as err:
        build_dataset("ade20k", "val", root=root)
    expected = root / "ADEChallengeData2016" / "images" / "validation" / "ADE_val_00000002.jpg"
    assert f"unpaired mask {orphan}: no image at {expected}" in str(err.value)


# --- CamVid ------------------------------------------------------------------------------
def test_camvid_void_is_ignored(tmp_path: Path) -> None:
    root = make_camvid(tmp_path)
    for split in ("train", "val", "test"):
        dataset = build_dataset("camvid", split, root=root)
        assert len(dataset) == 1 and dataset.num_classes == 11
        assert row(mask_of(dataset))[:4] == [0, 10, 255, 3]


def test_image_and_mask_of_different_sizes_is_an_error(tmp_path: Path) -> None:
    root = make_camvid(tmp_path)
    write_mask(root / "trainannot" / "0001TP_006690.png", stripes([1], size=(H, W + 2)))
    dataset = build_dataset("camvid", "train", root=root)
    with pytest.raises(UserError, match=r"is 16×12 but its mask .* is 18×12"):
        dataset[0]


def test_rgb_colour_mask_is_refused(tmp_path: Path) -> None:
    root = make_camvid(tmp_path)
    write_image(root / "valannot" / "0001TP_006690.png")  # a colour-coded mask, not indices
    with pytest.raises(UserError, match="masks must hold one class index per pixel"):
        build_dataset("camvid", "val", root=root)[0]


# --- Figaro-1k ---------------------------------------------------------------------------
def test_figaro_binary_masks_become_hair_and_background(tmp_path: Path) -> None:
    root = make_figaro(tmp_path)
    train = build_dataset("figaro1k", "train", root=tmp_path)  # the parent of Figaro1k/ works
    assert len(train) == 2 and train.class_names == ("background", "hair")
    for index in range(2):  # .pbm (mode "1") and a 0/255 PNG
        mask = mask_of(train, index)
        assert set(np.unique(mask)) == {0, 1}
        assert (mask[:, : W // 2] == 1).all() and (mask[:, W // 2 :] == 0).all()
    val = build_dataset("figaro1k", "val", root=root)
    assert [pair.image.name for pair in val.pairs] == ["Frame00002-org.jpg"]  # val = Testing


# --- the folder dataset ------------------------------------------------------------------
def test_folder_with_split_folders(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    train = build_dataset("folder", "train", root=root)
    assert len(train) == 2 and train.num_classes == 3
    assert train.class_names == ("sky", "car", "person") and len(train.palette) == 3
    assert row(mask_of(train))[:4] == [0, 1, 2, 255]


def test_folder_with_list_files_and_palette(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "extra").mkdir(parents=True)
    (root / "classes.yaml").write_text("classes: [bg, leaf]\npalette: [[0, 0, 0], [0, 255, 0]]\n")
    for name in ("x", "y"):
        write_image(root / "images" / f"{name}.png")
        write_mask(root / "masks" / f"{name}.png", stripes([1, 0]))
    write_image(root / "extra" / "z.jpg")
    write_mask(root / "extra" / "z_mask.png", stripes([0, 1]))
    (root / "train.txt").write_text("x\ny\n")
    (root / "val.txt").write_text("extra/z.jpg extra/z_mask.png\n")
    train = build_dataset("folder", "train", root=root)
    assert len(train) == 2 and train.palette == ((0, 0, 0), (0, 255, 0))
    val = build_dataset("folder", "val", root=root)
    assert row(mask_of(val))[:2] == [0, 1]


def test_folder_label_outside_the_class_list(tmp_path: Path) -> None:
    root = make_folder(tmp_path, classes="[sky, car]\n")
    with pytest.raises(UserError) as err:
        build_dataset("folder", "val", root=root)[0]
    assert "masks" in str(err.value) and "values outside the classes: 2" in str(err.value)


def test_folder_bad_class_list_is_explained(tmp_path: Path) -> None:
    root = make_folder(tmp_path, classes="classes: [a, b]\npalette: [[1, 2, 3]]\n")
    with pytest.raises(UserError, match="one \\[r, g, b\\]"):
        build_dataset("folder", "train", root=root)
    (root / "classes.yaml").unlink()
    with pytest.raises(UserError, match=f"expected {root / 'classes.yaml'}"):
        build_dataset("folder", "train", root=root)


def test_folder_missing_split_says_both_forms(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    with pytest.raises(UserError) as err:
        build_dataset("folder", "test", root=root)
    assert "test.txt" in str(err.value) and str(root / "images" / "test") in str(err.value)


# --- roots -------------------------------------------------------------------------------
def test_root_falls_back_to_segbench_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_camvid(tmp_path)
    monkeypatch.setenv("SEGBENCH_DATA", str(tmp_path))
    assert len(build_dataset("camvid", "val")) == 1


def test_no_root_and_no_env_says_how_to_provide_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGBENCH_DATA", raising=False)
    with pytest.raises(UserError) as err:
        build_dataset("ade20k", "train")
    message = str(err.value)
    assert "$SEGBENCH_DATA/ade20k" in message and "--root" in message
    assert "ADEChallengeData2016.zip" in message and "annotations/{training,validation}" in message


def test_env_root_that_does_not_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGBENCH_DATA", str(tmp_path))
    with pytest.raises(UserError, match=f"SEGBENCH_DATA/figaro1k {tmp_path / 'figaro1k'} is not a directory"):
        build_dataset("figaro1k", "train")


def test_unknown_split_and_option(tmp_path: Path) -> None:
    root = make_camvid(tmp_path)
    with pytest.raises(UserError, match="did you mean 'val'"):
        build_dataset("camvid", "vall", root=root)
    with pytest.raises(UserError, match="has no option 'sbd_root'"):
        build_dataset("camvid", "train", root=root, sbd_root="x")
