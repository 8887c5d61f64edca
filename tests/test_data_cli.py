"""``segbench datasets check`` and ``preview``, through the Typer sub-app."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segbench.data.cli import app
from tests.test_data_layouts import (
    H,
    W,
    make_ade20k,
    make_camvid,
    make_folder,
    stripes,
    write_image,
    write_mask,
)

runner = CliRunner()


def test_check_clean_tree_exits_0_with_counts(tmp_path: Path) -> None:
    root = make_camvid(tmp_path)
    result = runner.invoke(app, ["check", "camvid", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "train: 1 pairs" in result.output and "val: 1 pairs" in result.output
    assert "test: 1 pairs" in result.output and "clean" in result.output


def test_check_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    base = make_ade20k(tmp_path)
    root = base / "ADEChallengeData2016"
    images, labels = root / "images" / "training", root / "annotations" / "training"
    write_image(images / "ADE_train_00000002.jpg")  # no annotation
    write_image(images / "ADE_train_00000003.jpg")
    write_mask(labels / "ADE_train_00000003.png", stripes([1], size=(H + 4, W)))  # size mismatch
    write_image(images / "ADE_train_00000004.jpg")
    write_mask(labels / "ADE_train_00000004.png", stripes([3, 180]))  # label out of range
    result = runner.invoke(app, ["check", "ade20k", "--root", str(base)])
    assert result.exit_code == 2, result.output
    out = result.output
    assert "train: 3 pairs" in out and "val: 1 pairs" in out
    assert f"no mask at {labels / 'ADE_train_00000002.png'}" in out
    assert "size mismatch" in out and "ADE_train_00000003" in out and "16×16" in out
    assert "ADE_train_00000004.png: label values outside the classes: 180" in out
    assert "3 problem(s)" in out
    assert "ADEChallengeData2016.zip" in out  # where the data comes from


def test_check_one_split_and_a_missing_split_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    assert runner.invoke(app, ["check", "folder", "--root", str(root), "--split", "val"]).exit_code == 0
    result = runner.invoke(app, ["check", "folder", "--root", str(root), "--split", "test"])
    assert result.exit_code == 2 and str(root / "images" / "test") in result.output


def test_check_bad_input_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGBENCH_DATA", raising=False)
    unknown = runner.invoke(app, ["check", "camvd", "--root", str(tmp_path)])
    assert unknown.exit_code == 2 and "did you mean 'camvid'" in unknown.output
    no_root = runner.invoke(app, ["check", "camvid"])
    assert no_root.exit_code == 2 and "$SEGBENCH_DATA/camvid" in no_root.output
    generated = runner.invoke(app, ["check", "diagnostic"])
    assert generated.exit_code == 2 and "generated on the fly" in generated.output
    bad_option = runner.invoke(app, ["check", "folder", "--root", str(tmp_path), "-o", "classes_file"])
    assert bad_option.exit_code == 2 and "expected KEY=VALUE" in bad_option.output


def test_preview_of_the_diagnostic_dataset(tmp_path: Path) -> None:
    out = tmp_path / "img" / "preview.png"
    result = runner.invoke(
        app, ["preview", "diagnostic", "--out", str(out), "--n", "3", "--tile", "64", "-o", "size=64"]
    )
    assert result.exit_code == 0, result.output
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[1] == 3 * (2 * 64 + 4 + 8)  # three [image | mask] cells in a row
    colours = {tuple(c) for c in picture.reshape(-1, 3)[::7]}
    assert (128, 64, 128) in colours or (30, 110, 220) in colours  # road or water in palette colour
    assert (255, 255, 255) in colours  # the ignore band, drawn white


def test_preview_of_a_tree_on_disk(tmp_path: Path) -> None:
    root = make_folder(
        tmp_path, classes="classes: [a, b, c]\npalette: [[250, 0, 0], [0, 250, 0], [0, 0, 250]]\n"
    )
    out = tmp_path / "folder.png"
    result = runner.invoke(
        app, ["preview", "folder", "--root", str(root), "--out", str(out), "--split", "train"]
    )
    assert result.exit_code == 0, result.output
    assert "2 train samples" in result.output
    colours = {tuple(c) for c in np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3)}
    assert {(250, 0, 0), (0, 250, 0), (0, 0, 250)} <= colours
