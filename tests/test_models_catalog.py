"""One contract over every catalogued model, as timm's tests run over ``list_models()``.

The entries are read from the catalog itself, so a new family is tested the moment
its module exists. For each entry: its options are exactly its builder's keyword
arguments with the same defaults; every declared value of every option builds; the
built model returns ``{"out": logits}`` at input resolution (``"aux"`` only while
training, when it has one); and fvcore's jit trace counts its FLOPs. Family
discovery itself is tested on real modules: a new file is found, a broken one fails.

Kept cheap on two shared cores: option values are built on the ``meta`` device (no
weights are allocated or initialised), the forward and the trace run once per entry
at its cheapest widths (:data:`CHEAP`) on a tiny input, and nothing is pretrained.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from segbench.errors import UserError
from segbench.measure import count_flops
from segbench.models import build_model, catalog, entries
from segbench.models.catalog import ModelEntry, OptionSpec

pytestmark = pytest.mark.usefixtures("one_thread")

NUM_CLASSES = 3
#: the smallest build each family allows; an entry not named here is built at its defaults
CHEAP: dict[str, dict[str, Any]] = {
    "pspnet": {"backbone": "resnet18", "width": 0.125},
    "deeplabv3": {"backbone": "resnet18", "width": 0.125},
    "deeplabv3plus": {"backbone": "resnet18", "width": 0.125},
    "fcn": {"width": 0.0625},
    "unet": {"padding": True, "depth": 2, "base_width": 4},
    "cgnet": {"M": 2, "N": 2, "width": 0.25},
}
#: input side: a multiple of every family's largest stride, small enough for a full-width ResNet-101
SIZE = 32

ENTRIES = entries()


def _ids(entry: ModelEntry) -> str:
    return entry.name


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def _values(spec: OptionSpec) -> list[Any]:
    """Every value an option declares: its choices, both booleans, or its default."""
    if spec.choices is not None:
        return list(spec.choices)
    if spec.kind == "bool":
        return [True, False]
    return [spec.default]


def _base(entry: ModelEntry) -> dict[str, Any]:
    return entry.resolve(CHEAP.get(entry.name, {}))


def test_every_family_module_is_catalogued() -> None:
    modules = {path.stem for path in Path(catalog.__file__).parent.glob("*.py")} - {"__init__"}
    assert {name.rpartition(".")[2] for name in catalog.family_modules()} == modules
    assert set(CHEAP) <= {entry.name for entry in ENTRIES}  # no stale row


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_options_are_the_builders_keywords_with_its_defaults(entry: ModelEntry) -> None:
    parameters = dict(inspect.signature(entry.load_builder()).parameters)
    assert parameters.pop("num_classes").default is inspect.Parameter.empty
    assert [spec.name for spec in entry.options] == list(parameters)
    for spec in entry.options:
        default = parameters[spec.name].default
        if default is not inspect.Parameter.empty:  # a required keyword: the catalog's is the default
            assert _plain(spec.default) == _plain(default), spec.name
        assert spec.check(spec.default) is None, spec.name


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_every_declared_option_value_builds(entry: ModelEntry) -> None:
    base = _base(entry)
    built = 0
    for spec in entry.options:
        if spec.kind == "file":
            continue  # weights: a file of the model's own state dict (the family tests load one)
        for value in _values(spec):
            options = _buildable(entry, base, spec.name, value)
            with torch.device("meta"):
                model = build_model(entry.name, num_classes=NUM_CLASSES, **options)
            assert isinstance(model, torch.nn.Module)
            built += 1
    assert built >= 1


def _buildable(entry: ModelEntry, base: Mapping[str, Any], name: str, value: Any) -> dict[str, Any]:
    """``name=value`` over the cheap build (else the defaults), changing up to two other options
    where the value only combines with some (FCN's output stride 8 needs a ResNet and variant 32s)."""
    others = [(spec.name, v) for spec in entry.options if spec.name != name for v in _values(spec)]
    changes: list[dict[str, Any]] = [{}, *({a: x} for a, x in others)]
    changes += [{a: x, b: y} for i, (a, x) in enumerate(others) for b, y in others[i + 1 :] if a != b]
    for start in (base, entry.resolve({})):
        for change in changes:
            try:
                return entry.resolve({**start, **change, name: value})
            except UserError:
                continue
    pytest.fail(f"{entry.name}: {name}={value!r} builds with no combination of the other options")


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_output_contract_and_flops_trace(entry: ModelEntry) -> None:
    options = _base(entry)
    model = build_model(entry.name, num_classes=NUM_CLASSES, **options)
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model.eval()(images[:1])
        assert set(out) == {"out"}
        assert out["out"].shape == (1, NUM_CLASSES, SIZE, SIZE)
        trained = model.train()(images)
    has_aux = bool(options.get("aux"))
    assert set(trained) == ({"out", "aux"} if has_aux else {"out"})
    for logits in trained.values():
        assert logits.shape == (2, NUM_CLASSES, SIZE, SIZE)
    flops = count_flops(model.eval(), (1, 3, SIZE, SIZE), num_classes=NUM_CLASSES)
    assert flops.macs > 0 and flops.by_module


@pytest.fixture
def extra_family(tmp_path: Path) -> Iterator[Path]:
    """A folder that is part of the catalog package for the test: its modules are families."""
    catalog.__path__.append(str(tmp_path))
    catalog.reload()
    yield tmp_path
    catalog.__path__.remove(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("segbench.models.catalog.extra_")]:
        del sys.modules[name]
    catalog.reload()


FAMILY = """
from segbench.models.catalog import ModelEntry

ENTRIES = [ModelEntry(name="{name}", builder="segbench.models.unet:build_unet", summary="found, not listed")]
"""


def test_a_new_family_module_is_found_without_being_listed(extra_family: Path) -> None:
    (extra_family / "extra_found.py").write_text(FAMILY.format(name="extra-unet"))
    (extra_family / "_extra_helper.py").write_text("raise RuntimeError('helpers are not families')\n")
    assert "segbench.models.catalog.extra_found" in catalog.family_modules()
    assert catalog.get_entry("extra-unet").summary == "found, not listed"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import segbench.no_such_module\n", r"extra_broken does not import: ModuleNotFoundError"),
        ("ENTRY = None\n", r"extra_broken must define ENTRIES, a list of ModelEntry \(got NoneType\)"),
        (
            FAMILY.format(name="unet"),
            r"model 'unet' is declared twice, in segbench\.models\.catalog\.(extra_broken|unet) and",
        ),
    ],
    ids=["import-error", "no-entries", "duplicate-name"],
)
def test_a_broken_family_module_fails_loudly(extra_family: Path, source: str, message: str) -> None:
    (extra_family / "extra_broken.py").write_text(source)
    with pytest.raises(RuntimeError, match=message):
        entries()


def test_list_models_shows_params_notes_without_importing_torch() -> None:
    script = (
        "import sys\n"
        "from rich.console import Console\n"
        "from segbench.listing import models_table\n"
        "console = Console(width=300, record=True)\n"
        "console.print(models_table())\n"
        "text = console.export_text()\n"
        "assert 'CGNet_M3N21, 19 classes: 496,306 parameters' in text, text\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
