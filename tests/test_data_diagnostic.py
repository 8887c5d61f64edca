"""The embedded diagnostic dataset: determinism, splits, options, and the scene's semantics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from segbench.data import build_dataset
from segbench.data.diagnostic import DiagnosticDataset
from segbench.data.scene import BOAT, CAR, LAMP, POLE, ROAD, TREE, WATER
from segbench.data.transforms import TrainAugment
from segbench.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def small(split: str = "train", **options: object) -> DiagnosticDataset:
    defaults = {"size": 64, "train_length": 24, "val_length": 24}
    return build_dataset("diagnostic", split, **{**defaults, **options})  # type: ignore[return-value]


def test_items_are_normalised_images_and_int64_masks() -> None:
    dataset = small("val")
    image, mask = dataset[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert mask.shape == (64, 64) and mask.dtype == torch.int64
    assert image.min() < -0.5 and image.max() > 0.5  # normalised, not in [0, 1]
    assert dataset.num_classes == 7 and dataset.ignore_index == 255
    assert dataset.class_names == ("road", "water", "car", "boat", "tree", "pole", "lamp")
    assert len(dataset.palette) == 7
    assert set(mask.unique().tolist()) <= {*range(7), 255}


def test_same_seed_split_and_index_give_the_same_sample() -> None:
    first, second = small("train"), small("train")
    for index in (0, 5, 23):
        a_image, a_mask = first[index]
        b_image, b_mask = second[index]
        assert torch.equal(a_image, b_image) and torch.equal(a_mask, b_mask)
    assert not torch.equal(first[0][1], first[1][1])


def test_val_and_other_seeds_are_different_scenes() -> None:
    train_masks = {small("train")[i][1].numpy().tobytes() for i in range(24)}
    val_masks = {small("val")[i][1].numpy().tobytes() for i in range(24)}
    other_seed = {small("train", seed=1)[i][1].numpy().tobytes() for i in range(24)}
    assert not train_masks & val_masks
    assert not train_masks & other_seed


def test_options_size_length_and_noise() -> None:
    dataset = small("val", size=96, val_length=5, noise=0.0)
    assert len(dataset) == 5 and dataset[4][0].shape == (3, 96, 96)
    with pytest.raises(IndexError):
        dataset[5]
    clean = small("val", noise=0.0).scene(0)[0]
    noisy = small("val", noise=0.2).scene(0)[0]
    assert np.abs(noisy - clean).mean() > 0.05  # the same scene, with noise on top


def test_options_are_validated() -> None:
    with pytest.raises(UserError, match="'size' = 32 is below the minimum 64"):
        small(size=32)
    with pytest.raises(UserError, match="'size' must be of type int"):
        small(size="128")
    with pytest.raises(UserError, match="did you mean 'noise'"):
        small(nosie=0.1)
    with pytest.raises(UserError, match="reads no files"):
        build_dataset("diagnostic", "train", root="/data")


def test_the_scene_decides_car_or_boat() -> None:
    """Each scene is road or water (whichever covers more ground); its vehicles are all cars or all boats."""
    dataset = small("train", size=64, train_length=40)
    seen = set()
    for index in range(40):
        labels = dataset.scene(index)[1]
        present = set(np.unique(labels).tolist())
        assert {ROAD, WATER} <= present  # the band of the other ground crosses every scene
        assert len(present & {CAR, BOAT}) == 1
        on_water = (labels == WATER).sum() > (labels == ROAD).sum()
        assert (BOAT in present) == on_water
        seen |= present
    assert {ROAD, WATER, CAR, BOAT, TREE, POLE, LAMP, 255} <= seen


def test_vehicles_look_the_same_in_both_scenes() -> None:
    """Without noise, car and boat pixels have the same colours: only the scene tells them apart."""
    dataset = small("train", size=64, train_length=60, noise=0.0)
    colours = {CAR: [], BOAT: []}
    for index in range(60):
        image, labels = dataset.scene(index)
        for cls in colours:
            if (labels == cls).any():
                colours[cls].append(image[:, labels == cls].mean(axis=1))
    car, boat = np.mean(colours[CAR], axis=0), np.mean(colours[BOAT], axis=0)
    assert len(colours[CAR]) > 10 and len(colours[BOAT]) > 10
    np.testing.assert_allclose(car, boat, atol=0.03)


def test_objects_have_an_ignore_band_and_lamps_are_small() -> None:
    dataset = small("val", size=128, val_length=10)
    for index in range(10):
        labels = dataset.scene(index)[1]
        ignored = labels == 255
        assert ignored.any()
        # Every ignored pixel touches an object pixel (the band is around objects, nothing else).
        objects = np.isin(labels, (CAR, BOAT, TREE, POLE, LAMP))
        grown = objects.copy()
        grown[1:] |= objects[:-1]
        grown[:-1] |= objects[1:]
        grown[:, 1:] |= objects[:, :-1]
        grown[:, :-1] |= objects[:, 1:]
        assert grown[ignored].all()
    lamp_pixels = [(dataset.scene(i)[1] == LAMP).sum() for i in range(10)]
    # Three to six lamps per scene, each at most 1/6 of the image wide (21 px here).
    assert 3 * 5 * 5 <= np.mean(lamp_pixels) < 6 * 22 * 22


def test_augmentation_follows_torch_seed() -> None:
    dataset = small("train", augment=TrainAugment(crop_size=48, scale_range=(0.5, 2.0), photometric=True))
    torch.manual_seed(3)
    first = dataset[2]
    torch.manual_seed(3)
    again = dataset[2]
    torch.manual_seed(4)
    other = dataset[2]
    assert first[0].shape == (3, 48, 48) and first[1].shape == (48, 48)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_crop_size_none_keeps_one_size_for_the_default_collate() -> None:
    dataset = small("train", augment=TrainAugment(crop_size=None))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    images, masks = next(iter(loader))
    assert images.shape == (4, 3, 64, 64) and masks.shape == (4, 64, 64)


def test_benchmark_script_prints_the_ratio() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_diagnostic.py",
            "--size",
            "64",
            "--samples",
            "20",
            "--repeats",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "samples/s" in result.stdout and "target 2000 samples/s → ratio" in result.stdout
