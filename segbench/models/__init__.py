"""Model building: ``build_model(name, num_classes=..., **options)``.

Names resolve through the torch-free catalog (:mod:`segbench.models.catalog`);
an import path ``package.module:factory`` builds a user's own model. segbench's
models return ``{"out": logits}`` at input resolution (plus ``"aux"`` while
training with an aux head), the structure torchvision's segmentation models use;
any other model's output is read by :mod:`segbench.models.outputs`.

A factory gets the dataset's class count under the keyword it takes
(:data:`CLASS_COUNT_KWARGS`, found from its signature), so library classes such as
``segmentation_models_pytorch:Unet`` (``classes``) work without a wrapper; a
Hugging Face model class (one with a ``config_class`` and no such keyword) is
built from ``config_class(num_labels=..., **options)``, randomly initialised.

:func:`at_output_stride` is the one switch of a built model's output stride: the
evaluation and the measurements of its network (FLOPs, latency) both run through it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from segbench.errors import UserError
from segbench.models.catalog import ModelEntry, entries, get_entry
from segbench.options import check_plain_options
from segbench.plugins import is_import_path, load_object

__all__ = [
    "CLASS_COUNT_KWARGS",
    "ModelEntry",
    "at_output_stride",
    "build_model",
    "entries",
    "get_entry",
    "resolve_options",
]

#: the keyword a factory takes the class count as, in the order looked for:
#: segbench / torchvision, segmentation_models_pytorch, Hugging Face configs
CLASS_COUNT_KWARGS = ("num_classes", "classes", "num_labels")


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
        model = _call_factory(load_object(name), name, num_classes, options)
    else:
        entry = get_entry(name)
        model = _call_factory(entry.load_builder(), name, num_classes, entry.resolve(options))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model '{name}' built a {type(model).__name__}, not a torch.nn.Module")
    return model


@contextmanager
def at_output_stride(model: Any, stride: int | None) -> Iterator[None]:
    """Run the body with ``model`` at output stride ``stride``, weights unchanged; restore it after.

    ``eval.output_stride`` (DeepLab v3+'s "train at 16, evaluate at 8"): None, or the
    stride the model already has, changes nothing; a model without ``set_output_stride``
    cannot be switched, which is a UserError rather than a silently different network.
    """
    if stride is None or getattr(model, "output_stride", None) == stride:
        yield
        return
    if not callable(getattr(model, "set_output_stride", None)):
        raise UserError(
            f"eval.output_stride={stride}: {type(model).__name__} cannot change its output stride "
            "(it has no set_output_stride); leave eval.output_stride unset for this model"
        )
    original = model.output_stride
    model.set_output_stride(stride)
    try:
        yield
    finally:
        model.set_output_stride(original)


def _call_factory(factory: Callable[..., Any], name: str, num_classes: int, options: dict[str, Any]) -> Any:
    """``factory(**options)`` plus the class count as the factory spells it (an option given wins)."""
    parameters = _parameters(factory)
    keyword = _class_count_keyword(parameters)
    config_class = getattr(factory, "config_class", None)
    if keyword is None and isinstance(factory, type) and config_class is not None:
        # A Hugging Face PreTrainedModel: its __init__ takes a config; nothing is downloaded.
        try:
            config = config_class(**{"num_labels": num_classes, **options})
        except (TypeError, ValueError) as exc:
            raise UserError(
                f"model '{name}': {config_class.__name__}({_shown(options)}) failed: {exc}"
            ) from None
        return factory(config)
    kwargs = dict(options)
    if keyword is not None:
        kwargs.setdefault(keyword, num_classes)
    if parameters is not None:
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as exc:
            takes = ", ".join(p.name for p in parameters if p.kind is not p.VAR_KEYWORD) or "(nothing)"
            raise UserError(
                f"model '{name}' cannot take options {_shown(kwargs)}: {exc}; it takes {takes}"
            ) from None
    return factory(**kwargs)


def _parameters(factory: Callable[..., Any]) -> list[inspect.Parameter] | None:
    """The factory's parameters, or None when Python cannot tell (some builtins, C extensions)."""
    try:
        return list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None


def _class_count_keyword(parameters: list[inspect.Parameter] | None) -> str | None:
    """The keyword the class count goes to; ``num_classes`` when only ``**kwargs`` (or unknown); else None."""
    if parameters is None:
        return "num_classes"
    keywords = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for keyword in CLASS_COUNT_KWARGS:
        if keyword in keywords:
            return keyword
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return "num_classes"
    return None


def _shown(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())
