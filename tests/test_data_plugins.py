"""A third-party dataset through a real ``segbench.datasets`` entry point.

Nothing is installed: the plugin is a package plus a ``dist-info`` folder (what
``pip install`` leaves in site-packages) in a temporary directory on the path, so
``importlib.metadata`` finds its entry point exactly as it would an installed one.
The CLI runs as a real subprocess: ``list datasets``, ``run --dry-run`` and
``datasets check``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from segbench.data import build_dataset, catalog
from segbench.errors import UserError
from tests.test_data_layouts import stripes, write_image, write_mask

# The entry lives apart from its layout, as segbench's own catalog does: listing and
# suite validation import the entry only, never numpy or PIL.
ENTRY_SOURCE = """
from segbench.data.catalog import DatasetEntry
from segbench.options import OptionSpec

ENTRY = DatasetEntry(
    name="tiles",
    summary="tiles: a plugin dataset of images/<split>/ and masks/<split>/",
    num_classes=3,
    class_names=("floor", "wall", "door"),
    palette=((0, 0, 0), (200, 0, 0), (0, 200, 0)),
    splits=("train", "val"),
    layout=("images/<split>/<name>.png", "masks/<split>/<name>.png  (0..2, 255 = ignored)"),
    source="the plugin's own files",
    loader="tiles_plugin.layout:Tiles",
    top_level=("images/", "masks/"),
    options=(OptionSpec("flavour", "plain", "which tiles", "str", ("plain", "fancy")),),
)

NOT_AN_ENTRY = "a string"
"""

LAYOUT_SOURCE = """
from segbench.data.layouts.base import Layout, index_table, listing_by_stem


class Tiles(Layout):
    def has_split(self, split):
        return (self.root / "images" / split).is_dir()

    def list_split(self, split):
        image_dir = self.require_dir(self.root / "images" / split, f"the {split} images")
        mask_dir = self.require_dir(self.root / "masks" / split, f"the {split} masks")
        return listing_by_stem(split, image_dir, mask_dir, (".png",), ".png")

    def label_table(self, kind):
        return index_table(self.num_classes, self.ignore_index)
"""


def _write_plugin(base: Path, entry_value: str = "tiles_plugin.entry:ENTRY") -> None:
    package = base / "tiles_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "entry.py").write_text(textwrap.dedent(ENTRY_SOURCE))
    (package / "layout.py").write_text(textwrap.dedent(LAYOUT_SOURCE))
    info = base / "segbench_tiles-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: segbench-tiles\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[segbench.datasets]\ntiles = {entry_value}\n")


def _write_tree(root: Path) -> Path:
    for split, names in (("train", ("a", "b")), ("val", ("c",))):
        for i, name in enumerate(names):
            write_image(root / "images" / split / f"{name}.png", seed=i)
            write_mask(root / "masks" / split / f"{name}.png", stripes([0, 1, 2, 255]))
    return root


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plugin's site directory on ``sys.path``; the catalog re-reads entry points around the test."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    catalog.reload()
    yield site
    for name in [n for n in sys.modules if n.startswith("tiles_plugin")]:
        del sys.modules[name]
    catalog.reload()


def _segbench(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "segbench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def test_a_plugin_dataset_is_listed_validated_and_checked_by_the_cli(
    plugin_path: Path, tmp_path: Path
) -> None:
    _write_plugin(plugin_path)
    root = _write_tree(tmp_path / "tiles-data")

    listed = _segbench(plugin_path, "list", "datasets", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "tiles" in listed.stdout and "a plugin dataset of images" in listed.stdout
    assert "diagnostic" in listed.stdout  # the built-in ones are still there

    suite = tmp_path / "tiles.yaml"
    suite.write_text(
        "name: tiles-suite\n"
        f"datasets:\n  - name: tiles\n    root: {root}\n    options: {{flavour: fancy}}\n"
        "models:\n  - name: unet\n"
        "variants:\n  grid:\n    batch_norm: [true, false]\n"
        "stages: [complexity]\n"
    )
    dry = _segbench(plugin_path, "run", str(suite), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "tiles-suite: 2 job(s)" in dry.stdout and "dataset tiles" in dry.stdout

    # the plugin's own options are declared and checked like a built-in dataset's
    suite.write_text(suite.read_text().replace("flavour: fancy", "flavour: fency"))
    bad = _segbench(plugin_path, "run", str(suite), "--dry-run", cwd=tmp_path)
    assert bad.returncode == 2
    assert "tiles.yaml:5" in bad.stderr and "did you mean 'fancy'" in bad.stderr

    checked = _segbench(plugin_path, "datasets", "check", "tiles", "--root", str(root), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "train: 2 pairs" in checked.stdout and "val: 1 pairs" in checked.stdout


def test_a_plugin_dataset_builds_through_its_layout(plugin_path: Path, tmp_path: Path) -> None:
    _write_plugin(plugin_path)
    root = _write_tree(tmp_path / "tiles-data")
    catalog.reload()
    assert [e.name for e in catalog.dataset_entries()][-1] == "tiles"
    dataset = build_dataset("tiles", "train", root=root)
    assert len(dataset) == 2 and dataset.num_classes == 3
    image, mask = dataset[0]
    assert tuple(image.shape) == (3, *mask.shape)
    assert set(np.unique(mask.numpy())) == {0, 1, 2, 255}
    with pytest.raises(UserError, match="unknown dataset 'tils' \\(did you mean 'tiles'\\?\\)"):
        catalog.get_dataset_entry("tils")
    with pytest.raises(UserError, match="has no split 'test'"):
        build_dataset("tiles", "test", root=root)


def test_listing_plugin_datasets_imports_neither_torch_nor_numpy(plugin_path: Path) -> None:
    _write_plugin(plugin_path)
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(plugin_path)!r})\n"
        "from segbench.data.catalog import dataset_entries\n"
        "assert 'tiles' in [e.name for e in dataset_entries()]\n"
        "heavy = [m for m in ('torch', 'numpy', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_broken_plugin_fails_naming_its_entry_point(plugin_path: Path, tmp_path: Path) -> None:
    _write_plugin(plugin_path, entry_value="tiles_plugin.entry:ENTRYY")
    listed = _segbench(plugin_path, "list", "datasets", cwd=tmp_path)
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert "entry point 'tiles = tiles_plugin.entry:ENTRYY' (group segbench.datasets)" in listed.stderr
    assert "did you mean 'ENTRY'" in listed.stderr

    info = plugin_path / "segbench_tiles-0.1.dist-info" / "entry_points.txt"
    info.write_text("[segbench.datasets]\ntiles = tiles_plugin.entry:NOT_AN_ENTRY\n")
    catalog.reload()
    with pytest.raises(UserError, match="names a str, not a segbench DatasetEntry"):
        catalog.get_dataset_entry("tiles")
    # a built-in dataset never needs the broken plugin
    assert catalog.get_dataset_entry("camvid").num_classes == 11
