"""MobileNetV2 and MobileNetV3-Large features from torchvision, dilatable.

``features`` keeps torchvision's module names, so an ImageNet checkpoint of the
classifier loads into the backbone (its ``classifier.*`` is ignored).

* MobileNetV2 ends at the 320-channel block, without the 1280-channel 1x1 conv,
  as DeepLab's official MobileNetV2 feature extractor does.
* MobileNetV3-Large ends with its 960-channel 1x1 conv, as torchvision's
  ``deeplabv3_mobilenet_v3_large`` does.

Stride removal follows DeepLab's official MobileNet code: the block that loses its
stride keeps the previous rate in its depthwise conv; the blocks after it dilate.
``width`` is torchvision's ``width_mult`` (channels rounded to multiples of 8).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models import mobilenet_v2, mobilenet_v3_large

from segbench.models.backbones.base import Backbone, no_multi_grid, tap_sequential
from segbench.models.backbones.layers import set_conv_geometry


class _MobileNetBackbone(Backbone):
    """``features`` of a torchvision MobileNet with taps at fixed block indices."""

    def __init__(self, name: str, features: nn.Sequential, taps: dict[str, int], output_stride: int) -> None:
        channels = {key: _out_channels(features[index]) for key, index in taps.items()}
        super().__init__(name, channels)
        self.features = features
        self._taps = {index: key for key, index in taps.items()}
        # Nominal strides, read once: the modules' own strides change with the output stride.
        self._strides = [_depthwise(m).stride[0] if _depthwise(m) else _stem_stride(m) for m in features]
        self.set_output_stride(output_stride)

    def unit_strides(self) -> list[int]:
        return list(self._strides)

    def apply_plan(self, plan: list[tuple[int, int]]) -> None:
        for (stride, rate), module in zip(plan, self.features, strict=True):
            conv = _depthwise(module)
            if conv is not None:
                set_conv_geometry(conv, stride, rate)

    def extract(self, x: Tensor) -> dict[str, Tensor]:
        return tap_sequential(self.features, self._taps, x)


class MobileNetV2Backbone(_MobileNetBackbone):
    """MobileNetV2: 24 ch at stride 4, 32 at 8, 96 at 16 (``aux``), 320 at 32."""

    def __init__(
        self, name: str, output_stride: int = 32, width: float = 1.0, multi_grid: Sequence[int] | None = None
    ) -> None:
        no_multi_grid(name, multi_grid)
        features = mobilenet_v2(weights=None, width_mult=width).features[:-1]  # drop the 1280-ch 1x1 conv
        taps = {"low_level": 3, "mid_level": 6, "aux": 13, "out": len(features) - 1}
        super().__init__(name, features, taps, output_stride)


class MobileNetV3LargeBackbone(_MobileNetBackbone):
    """MobileNetV3-Large: 24 ch at stride 4, 40 at 8, 112 at 16 (``aux``), 960 at 32."""

    def __init__(
        self, name: str, output_stride: int = 32, width: float = 1.0, multi_grid: Sequence[int] | None = None
    ) -> None:
        no_multi_grid(name, multi_grid)
        features = mobilenet_v3_large(weights=None, width_mult=width).features
        taps = {"low_level": 3, "mid_level": 6, "aux": 12, "out": len(features) - 1}
        super().__init__(name, features, taps, output_stride)


def _depthwise(module: nn.Module) -> nn.Conv2d | None:
    """The spatial (depthwise) conv of an inverted-residual block; None for 1x1 or stem layers."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            return m
    return None


def _stem_stride(module: nn.Module) -> int:
    conv = next(m for m in module.modules() if isinstance(m, nn.Conv2d))
    return conv.stride[0]


def _out_channels(module: nn.Module) -> int:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
