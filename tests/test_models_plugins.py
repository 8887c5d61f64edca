"""Your own model: an import path ``package.module:factory`` and the ``segbench.models`` entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from segbench.errors import UserError
from segbench.models import build_model, catalog, entries, get_entry, resolve_options

PLUGIN_SOURCE = '''
"""A user's segmentation model, as a third-party package would ship it."""

import torch.nn.functional as F
from torch import nn

from segbench.models.catalog import ModelEntry, OptionSpec


class EdgeNet(nn.Module):
    def __init__(self, num_classes, width=4, stride=2):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, stride=stride, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.aux_classifier = None

    def forward(self, x):
        logits = self.classifier(self.body(x))
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def build(num_classes, width=4, stride=2):
    return EdgeNet(num_classes, width, stride)


def not_a_module(num_classes):
    return "a string"


ENTRY = ModelEntry(
    name="{entry_name}",
    builder="{module}:build",
    summary="EdgeNet published as a ready catalog entry",
    options=(OptionSpec("width", 6, "channels", "int"), OptionSpec("stride", 2, "stride", "int", (1, 2))),
)
'''


def _write_plugin(root: Path, module: str, entry_name: str = "edgenet_entry") -> None:
    source = PLUGIN_SOURCE.replace("{module}", module).replace("{entry_name}", entry_name)
    (root / f"{module}.py").write_text(textwrap.dedent(source))


def _write_distribution(root: Path, module: str) -> None:
    """A minimal installed distribution: what ``pip install`` leaves in site-packages."""
    info = root / "segbench_edgenet-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: segbench-edgenet\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[segbench.models]\nedgenet = {module}:build\nedgenet_entry = {module}:ENTRY\n"
    )


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tmp_path`` on ``sys.path``; the registry is re-read before and after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    catalog.reload()
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("user_edgenet")]:
        del sys.modules[name]
    catalog.reload()


def test_an_import_path_builds_the_users_factory(plugin_dir: Path) -> None:
    _write_plugin(plugin_dir, "user_edgenet_path")
    model = build_model("user_edgenet_path:build", num_classes=3, width=5)
    assert model.body[0].out_channels == 5
    assert model(torch.randn(1, 3, 20, 24))["out"].shape == (1, 3, 20, 24)
    # the factory's own keyword arguments are the options; nothing is filled in
    assert resolve_options("user_edgenet_path:build", {"width": 5}) == {"width": 5}


def test_import_path_errors_say_what_was_tried(plugin_dir: Path) -> None:
    _write_plugin(plugin_dir, "user_edgenet_errors")
    with pytest.raises(UserError, match="has no 'biuld' \\(did you mean 'build'\\?\\)"):
        build_model("user_edgenet_errors:biuld", num_classes=3)
    with pytest.raises(UserError, match="cannot import 'user_edgenet_missing'"):
        build_model("user_edgenet_missing:build", num_classes=3)
    with pytest.raises(TypeError, match="not a torch.nn.Module"):
        build_model("user_edgenet_errors:not_a_module", num_classes=3)


def test_entry_points_add_a_factory_and_a_ready_entry(plugin_dir: Path) -> None:
    _write_plugin(plugin_dir, "user_edgenet_plugin")
    _write_distribution(plugin_dir, "user_edgenet_plugin")
    catalog.reload()
    names = {entry.name for entry in entries()}
    assert {"edgenet", "edgenet_entry", "fcn", "unet", "cgnet"} <= names

    # a factory: its keyword arguments are its options
    factory_model = build_model("edgenet", num_classes=2, width=3)
    assert factory_model.body[0].out_channels == 3
    assert factory_model(torch.randn(1, 3, 16, 16))["out"].shape == (1, 2, 16, 16)

    # a published ModelEntry: declared options, defaults and choices apply
    entry = get_entry("edgenet_entry")
    assert entry.summary == "EdgeNet published as a ready catalog entry"
    assert resolve_options("edgenet_entry", {}) == {"width": 6, "stride": 2}
    assert build_model("edgenet_entry", num_classes=2).body[0].out_channels == 6
    with pytest.raises(UserError, match="did you mean 'width'"):
        build_model("edgenet_entry", num_classes=2, widht=3)
    with pytest.raises(UserError, match="is not one of"):
        build_model("edgenet_entry", num_classes=2, stride=4)


def test_entry_points_go_away_with_their_distribution(plugin_dir: Path) -> None:
    _write_plugin(plugin_dir, "user_edgenet_gone")
    _write_distribution(plugin_dir, "user_edgenet_gone")
    catalog.reload()
    assert build_model("edgenet", num_classes=2) is not None
    (plugin_dir / "segbench_edgenet-0.1.dist-info" / "entry_points.txt").unlink()
    catalog.reload()
    with pytest.raises(UserError, match="unknown model 'edgenet'"):
        build_model("edgenet", num_classes=2)


def test_listing_models_with_a_plugin_installed_does_not_import_torch(tmp_path: Path) -> None:
    # `segbench list models` must stay instant: entry points are named, not imported, and the
    # families' catalogs (FCN, U-Net, CGNet, torchvision references) are torch-free.
    _write_plugin(tmp_path, "user_edgenet_listing")
    _write_distribution(tmp_path, "user_edgenet_listing")
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from segbench.models.catalog import entries\n"
        "names = {e.name for e in entries()}\n"
        "assert {'edgenet', 'fcn', 'unet', 'cgnet', 'torchvision.fcn_resnet50'} <= names, names\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
