"""The model-output adapter: whatever a model returns, as ``(main logits, aux logits…)`` at the input size.

Every stage that runs a model (FLOPs, latency, memory, training, evaluation,
multi-scale + flip, sliding window) reads its output through
:func:`model_heads`, so a model is accepted or rejected in one place and the
same way everywhere. The forms models come in:

* a tensor ``[N, C, h, w]`` (``nn.Sequential``, segmentation_models_pytorch);
* a mapping with ``"out"`` (and ``"aux"``), as torchvision's segmentation
  models and segbench's own return;
* a mapping or an object with ``logits`` (a Hugging Face ``ModelOutput``,
  e.g. SegFormer's, whose logits are at 1/4 of the input size);
* a tuple / list: its 4-D tensors with the class count are the main head, then
  aux heads; anything else in it (smp's ``aux_params`` classification labels
  ``[N, C]``, features) is not a segmentation output and is ignored.

Logits at another resolution than the input are resized to it, bilinear with
``align_corners=False`` as HF SegFormer's and mmseg's ``resize`` do. The
channel count must be the dataset's class count, or 1 on a two-class dataset
(a sigmoid binary model: the foreground logit); anything else is a
:class:`~segbench.errors.UserError` naming the model and both counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from segbench.errors import UserError

#: what a model may return, for error messages
ACCEPTED = (
    "a tensor [N, C, H, W], a mapping with 'out' (and 'aux') or 'logits', an object with .logits, "
    "or a tuple/list whose 4-D tensors are the main head then aux heads"
)


def channels_fit(channels: int, num_classes: int | None) -> bool:
    """``channels`` output maps can score ``num_classes`` classes: one per class, or one sigmoid for two."""
    return num_classes is None or channels == num_classes or (num_classes == 2 and channels == 1)


def model_name(model: nn.Module | str | None) -> str:
    """How an error names the model: its class with the module it comes from."""
    if model is None or isinstance(model, str):
        return model or "the model"
    cls = type(model)
    return f"{cls.__name__} ({cls.__module__}.{cls.__qualname__})"


def model_heads(
    outputs: Any,
    size: Sequence[int],
    num_classes: int | None = None,
    *,
    model: nn.Module | str | None = None,
) -> tuple[Tensor, ...]:
    """``outputs`` of a model as ``(main, *aux)`` logits ``[N, C, *size]``.

    ``num_classes`` is the dataset's class count (None: not checked);
    ``model`` names the model in errors.
    """
    heads = _heads(outputs, num_classes, model)
    target = (int(size[-2]), int(size[-1]))
    for head in heads:
        if head.dim() != 4:
            raise UserError(
                f"{model_name(model)} returned logits of shape {tuple(int(d) for d in head.shape)}; "
                "segmentation logits are 4-D [N, classes, H, W]"
            )
        if not channels_fit(head.shape[1], num_classes):
            raise UserError(
                f"{model_name(model)} returns {head.shape[1]} output channels but the dataset has "
                f"{num_classes} classes; build it with {num_classes} output channels"
                + (" (or 1 for a sigmoid binary model)" if num_classes == 2 else "")
            )
    return tuple(
        head
        if tuple(head.shape[-2:]) == target
        else F.interpolate(head, size=target, mode="bilinear", align_corners=False)
        for head in heads
    )


def forward_heads(model: nn.Module, images: Tensor, num_classes: int | None = None) -> tuple[Tensor, ...]:
    """Run ``model`` on ``images`` and adapt what it returns (:func:`model_heads`)."""
    return model_heads(model(images), images.shape[-2:], num_classes, model=model)


def _heads(outputs: Any, num_classes: int | None, model: nn.Module | str | None) -> tuple[Tensor, ...]:
    if isinstance(outputs, Tensor):
        return (outputs,)
    if isinstance(outputs, Mapping):
        if isinstance(outputs.get("out"), Tensor):
            aux = outputs.get("aux")
            return (outputs["out"], aux) if isinstance(aux, Tensor) else (outputs["out"],)
        if isinstance(outputs.get("logits"), Tensor):
            return (outputs["logits"],)
        raise UserError(
            f"{model_name(model)} returned a mapping with keys {sorted(map(str, outputs))} "
            "but neither 'out' nor 'logits' as a tensor; a model returns " + ACCEPTED
        )
    if isinstance(getattr(outputs, "logits", None), Tensor):
        return (outputs.logits,)
    if isinstance(outputs, (tuple, list)):
        tensors = [x for x in outputs if isinstance(x, Tensor) and x.dim() == 4]
        heads = tuple(x for x in tensors if channels_fit(x.shape[1], num_classes))
        if heads:
            return heads
        found = ", ".join(str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__ for x in outputs)
        if tensors:
            raise UserError(
                f"{model_name(model)} returned a {type(outputs).__name__} of ({found}): no 4-D tensor has "
                f"{num_classes} channels, the dataset's class count"
                + (" (or 1 for a sigmoid binary model)" if num_classes == 2 else "")
            )
        raise UserError(
            f"{model_name(model)} returned a {type(outputs).__name__} of ({found}) without 4-D logits; "
            "a model returns " + ACCEPTED
        )
    raise UserError(f"{model_name(model)} returned {type(outputs).__name__}; a model returns {ACCEPTED}")
