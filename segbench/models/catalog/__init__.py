"""The model catalog: every model's name, options and defaults, without torch.

Why a catalog apart from the builders: ``segbench list models`` and suite
validation (``--dry-run``, "did you mean") must be instant, so what a model
*accepts* is declared here in plain Python, and the builder that imports torch
is named by an import path and loaded only when a job builds the model.

Each family declares its entries in a small torch-free module of this package
(``ENTRIES = [ModelEntry(...)]``). The families are *found*, not listed: every
module of this package (but ``_private`` ones) is a family, so a new family is one
new file, and a module that fails to import, lacks ``ENTRIES`` or reuses a name
fails every command that reads the catalog instead of vanishing from it.
Third-party packages add entries through the ``segbench.models`` entry-point group
(the entry point loads a ``ModelEntry`` or a factory callable), and a suite may
name any factory as ``package.module:factory`` (:mod:`segbench.plugins`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from segbench.errors import UserError, did_you_mean
from segbench.options import OptionSpec, check_plain_options, resolve_options
from segbench.plugins import entry_points, is_import_path, load_object

__all__ = [
    "BACKBONE_WEIGHTS",
    "BACKBONE_WIDTH",
    "MODEL_WEIGHTS",
    "ModelEntry",
    "OptionSpec",
    "entries",
    "family_modules",
    "get_entry",
    "is_import_path",
    "load_object",
    "reload",
]

ENTRY_POINT_GROUP = "segbench.models"


#: Options of the families built on a replaceable backbone (PSPNet, DeepLab v3 / v3+).
BACKBONE_WIDTH = OptionSpec(
    "width", 1.0, "channel multiplier of backbone and heads (1.0 = the paper)", "float", above=0
)
BACKBONE_WEIGHTS = OptionSpec(
    "weights",
    None,
    "local state-dict file: the whole model (keys 'backbone.*', ...) or the backbone alone "
    "(e.g. torchvision ImageNet names); nothing downloads",
    "file",
)
#: The weights option of the families without a replaceable backbone (FCN, U-Net).
MODEL_WEIGHTS = OptionSpec(
    "weights", None, "local state-dict file of the whole model (nothing downloads)", "file"
)


@dataclass(frozen=True)
class ModelEntry:
    """A model family as the papers name it.

    ``builder`` is ``"module:function"``; the function is called as
    ``builder(num_classes=..., **options)`` with every option resolved to its
    default and returns an ``nn.Module`` whose ``forward`` returns
    ``{"out": logits}`` (plus ``"aux"`` while training with an aux head).
    """

    name: str
    builder: str
    summary: str
    paper: str = ""
    options: tuple[OptionSpec, ...] = ()
    #: the published parameter count the builder reproduces, shown by ``segbench list models``
    params_note: str = ""
    open_options: bool = False  # plugin factories: options are the factory's own kwargs
    #: Options that are each valid but not together (FCN's VGG16 at output stride 8): the
    #: builder would refuse them in every job, so resolution refuses them at load time.
    #: Called with the resolved options; returns what is wrong, or None.
    check: Callable[[Mapping[str, Any]], str | None] | None = None

    def resolve(
        self, options: Mapping[str, Any], where: str = "", combination: bool = True
    ) -> dict[str, Any]:
        """Defaults filled in; unknown names and ill-typed or out-of-range values are UserErrors.

        A plugin factory without declared options (``open_options``) takes its options as
        they are, checked only to be plain JSON data. ``combination=False`` checks each
        option alone (a grid value, before the other factors of its row are known).
        """
        if self.open_options:
            return check_plain_options(options, f"model '{self.name}'", where)
        resolved = resolve_options(self.options, options, f"model '{self.name}'", where)
        problem = self.check(resolved) if self.check is not None and combination else None
        if problem:
            raise UserError(f"{where + ': ' if where else ''}model '{self.name}': {problem}")
        return resolved

    def load_builder(self) -> Callable[..., Any]:
        return load_object(self.builder)


_registry: dict[str, ModelEntry] | None = None


def _entries() -> dict[str, ModelEntry]:
    global _registry
    if _registry is None:
        reg: dict[str, ModelEntry] = {}
        found: dict[str, str] = {}  # entry name -> the family module that declared it
        for family in family_modules():
            for entry in _family_entries(family):
                if entry.name in found:
                    raise RuntimeError(
                        f"model '{entry.name}' is declared twice, in {found[entry.name]} and {family}"
                    )
                found[entry.name] = family
                reg[entry.name] = entry
        for name, ep in entry_points(ENTRY_POINT_GROUP).items():
            reg.setdefault(name, _entry_from_entry_point(ep))
        _registry = reg
    return _registry


def family_modules() -> list[str]:
    """Every family module of this package, by full name (``_private`` helper modules excluded)."""
    return sorted(
        f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")
    )


def _family_entries(module_name: str) -> list[ModelEntry]:
    """A family module's ``ENTRIES``; a module that breaks is an error naming it, never skipped."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise RuntimeError(f"model catalog module {module_name} does not import: {exc!r}") from exc
    declared = getattr(module, "ENTRIES", None)
    if not isinstance(declared, list | tuple) or not all(isinstance(e, ModelEntry) for e in declared):
        raise RuntimeError(
            f"model catalog module {module_name} must define ENTRIES, a list of ModelEntry "
            f"(got {type(declared).__name__})"
        )
    return list(declared)


def _entry_from_entry_point(ep: metadata.EntryPoint) -> ModelEntry:
    # A plugin may publish a ready ModelEntry, or just a factory; a factory's
    # options are whatever keyword arguments it takes (validated when built).
    return ModelEntry(
        name=ep.name,
        builder=ep.value,
        summary=f"plugin model from entry point {ep.value}",
        open_options=True,
    )


def entries() -> list[ModelEntry]:
    """All catalogued models, by name."""
    return sorted(_entries().values(), key=lambda e: e.name)


def get_entry(name: str) -> ModelEntry:
    """The entry for a registered name, or a UserError with a suggestion."""
    reg = _entries()
    if name in reg:
        entry = reg[name]
        if entry.open_options:
            obj = load_object(entry.builder)
            if isinstance(obj, ModelEntry):
                reg[name] = obj
                return obj
        return entry
    raise UserError(f"unknown model '{name}'{did_you_mean(name, reg)}; `segbench list models` lists them")


def reload() -> None:
    """Forget the cached registry (entry points are read again on next use)."""
    global _registry
    _registry = None
