"""Model building: ``build_model(name, num_classes=..., **options)``.

Names resolve through the torch-free catalog (:mod:`segbench.models.catalog`);
an import path ``package.module:factory`` builds a user's own model. Every
model returns ``{"out": logits}`` at input resolution (plus ``"aux"`` while
training with an aux head), the structure torchvision's segmentation models use.
"""

from __future__ import annotations

from typing import Any

from segbench.models.catalog import ModelEntry, entries, get_entry, is_import_path, load_object
from segbench.options import check_plain_options

__all__ = ["ModelEntry", "build_model", "entries", "get_entry", "resolve_options"]


def resolve_options(
    name: str, options: dict[str, Any], where: str = "", combination: bool = True
) -> dict[str, Any]:
    """The full option dict a job will build with (defaults filled in, every value checked).

    An import path ``package.module:factory`` has no catalog entry: its options are the
    factory's own keyword arguments, passed as they are (the factory checks them when the
    job builds it), and only required to be plain JSON data.
    """
    if is_import_path(name):
        return check_plain_options(options, f"model '{name}'", where)
    return get_entry(name).resolve(options, where, combination)


def build_model(name: str, num_classes: int, **options: Any) -> Any:
    """Build a catalogued model or an import-path factory; returns an ``nn.Module``."""
    import torch.nn as nn  # lazy: the catalog itself stays torch-free

    if is_import_path(name):
        factory = load_object(name)
        model = factory(num_classes=num_classes, **options)
    else:
        entry = get_entry(name)
        model = entry.load_builder()(num_classes=num_classes, **entry.resolve(options))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model '{name}' built a {type(model).__name__}, not a torch.nn.Module")
    return model
