"""The torch-free dataset catalog: entries, option resolution, and the promise not to import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from segbench.data.catalog import dataset_entries, get_dataset_entry, resolve_dataset_options
from segbench.errors import UserError


def test_every_dataset_is_catalogued_with_consistent_metadata() -> None:
    names = [entry.name for entry in dataset_entries()]
    assert names == ["diagnostic", "voc2012", "cityscapes", "ade20k", "camvid", "figaro1k", "folder"]
    expected_classes = {"voc2012": 21, "cityscapes": 19, "ade20k": 150, "camvid": 11, "figaro1k": 2}
    for entry in dataset_entries():
        assert entry.ignore_index == 255
        assert {"train", "val"} <= set(entry.splits)
        if entry.num_classes is not None:
            assert len(entry.class_names) == len(entry.palette) == entry.num_classes
            assert len(set(entry.palette)) == entry.num_classes  # every class its own colour
        if entry.name in expected_classes:
            assert entry.num_classes == expected_classes[entry.name]
            assert entry.source and entry.layout and entry.top_level
    assert get_dataset_entry("folder").num_classes is None  # its classes live in the root


def test_where_names_the_env_root_or_says_generated() -> None:
    assert "generated" in get_dataset_entry("diagnostic").where()
    where = get_dataset_entry("cityscapes").where()
    assert "$SEGBENCH_DATA/cityscapes/" in where and "leftImg8bit/" in where and "gtFine/" in where


def test_unknown_dataset_suggests_a_name() -> None:
    with pytest.raises(UserError, match="unknown dataset 'cityscape' \\(did you mean 'cityscapes'\\?\\)"):
        get_dataset_entry("cityscape")


def test_resolve_fills_defaults_and_checks_values() -> None:
    assert resolve_dataset_options("diagnostic", {"size": 96}) == {
        "size": 96,
        "train_length": 2000,
        "val_length": 200,
        "noise": 0.08,
        "seed": 0,
    }
    assert resolve_dataset_options("cityscapes", {}) == {"labels": "auto"}
    with pytest.raises(
        UserError, match=r"suite.yaml:3: dataset 'diagnostic' has no option 'sise' \(did you mean 'size'\?\)"
    ):
        resolve_dataset_options("diagnostic", {"sise": 96}, where="suite.yaml:3")
    with pytest.raises(UserError, match="above the maximum 512"):
        resolve_dataset_options("diagnostic", {"size": 1024})
    with pytest.raises(UserError, match="must be of type int, got True"):
        resolve_dataset_options("diagnostic", {"train_length": True})
    with pytest.raises(UserError, match="is not one of 'auto', 'labelTrainIds', 'labelIds'"):
        resolve_dataset_options("cityscapes", {"labels": "trainIds"})


def test_catalog_and_package_import_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, segbench.data, segbench.data.catalog as c; c.dataset_entries(); "
        "heavy = [m for m in ('torch', 'numpy', 'PIL') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
