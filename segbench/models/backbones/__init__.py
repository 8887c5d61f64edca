"""Feature extractors shared by the segmentation heads (PSPNet, DeepLab v3 / v3+).

Every backbone is a :class:`~segbench.models.backbones.base.Backbone`: ``forward(x)``
returns named feature maps whose channel counts are known before any forward
(``backbone.channels``):

* ``low_level`` - stride 4 (DeepLab v3+'s "Conv2": ResNet res2, Xception's
  entry-flow tap, MobileNet's 24-channel block),
* ``mid_level`` - stride 8 (DeepLab v3+'s "Conv3"),
* ``aux`` - the stage before the last one (ResNet res4: PSPNet's deep supervision),
* ``out`` - the last stage, at the backbone's current ``output_stride``.

``set_output_stride(8 | 16 | 32)`` swaps late strides for atrous rates in place,
without touching a weight, so a model trained at one stride is evaluated at another.

This package module stays torch-free (the catalog imports :data:`BACKBONES` to list
choices); the torch-using modules load only when a backbone is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from segbench.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from segbench.models.backbones.base import Backbone

# name -> "module:factory"; factories take (name, output_stride, width, multi_grid, deep_stem).
_FACTORIES: dict[str, str] = {
    "resnet18": "resnet:ResNetBackbone",
    "resnet34": "resnet:ResNetBackbone",
    "resnet50": "resnet:ResNetBackbone",
    "resnet101": "resnet:ResNetBackbone",
    "mobilenet_v2": "mobilenet:MobileNetV2Backbone",
    "mobilenet_v3_large": "mobilenet:MobileNetV3LargeBackbone",
    "squeezenet1_1": "squeezenet:SqueezeNetBackbone",
    "vgg16": "vgg:VGG16Backbone",
    "xception65": "xception:XceptionBackbone",
    "xception71": "xception:XceptionBackbone",
}

BACKBONES: tuple[str, ...] = tuple(_FACTORIES)
"""Every backbone name, in catalog order."""

RESNETS: tuple[str, ...] = tuple(name for name in BACKBONES if name.startswith("resnet"))

__all__ = ["BACKBONES", "RESNETS", "Backbone", "build_backbone"]


def build_backbone(
    name: str,
    *,
    output_stride: int = 32,
    width: float = 1.0,
    multi_grid: Sequence[int] | None = None,
    deep_stem: bool = False,
    strided_conv_keeps_rate: bool = False,
) -> Backbone:
    """Build backbone ``name`` at ``output_stride``.

    ``multi_grid`` holds the unit rates of the last block (DeepLab v3's Multi-Grid);
    ``None`` is the backbone's own default (no multi-grid). ``deep_stem`` selects
    PSPNet's three 3x3 convs instead of torchvision's 7x7 stem (ResNets only).
    ``strided_conv_keeps_rate`` dilates a ResNet the TF DeepLab / torchvision way
    (the conv that lost its stride keeps the previous rate) instead of PSPNet's
    stage-wise way; the other backbones always follow DeepLab's rule.
    """
    if name not in _FACTORIES:
        raise UserError(
            f"unknown backbone '{name}'{did_you_mean(name, BACKBONES)}; backbones: {', '.join(BACKBONES)}"
        )
    if isinstance(width, bool) or not isinstance(width, int | float) or width <= 0:
        raise UserError(f"width must be a positive number (1.0 = the paper's widths); got {width!r}")
    if deep_stem and name not in RESNETS:
        raise UserError(
            f"deep_stem=True applies to ResNet backbones ({', '.join(RESNETS)}); '{name}' keeps its own stem"
        )
    module_name, _, class_name = _FACTORIES[name].partition(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    factory = getattr(module, class_name)
    kwargs: dict[str, Any] = {"output_stride": output_stride, "width": float(width), "multi_grid": multi_grid}
    if name in RESNETS:
        kwargs["deep_stem"] = deep_stem
        kwargs["strided_conv_keeps_rate"] = strided_conv_keeps_rate
    return factory(name, **kwargs)


def __getattr__(attr: str) -> Any:
    # ``Backbone`` needs torch; load it on first use so this module stays torch-free.
    if attr == "Backbone":
        from segbench.models.backbones.base import Backbone

        return Backbone
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
