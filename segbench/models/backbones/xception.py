"""DeepLab v3+'s modified aligned Xception-65 and -71.

Following the official TensorFlow code (``research/deeplab/core/xception.py``):
every max-pool of Xception is a stride-2 separable conv, every depthwise conv is
followed by BatchNorm, the middle flow repeats 16 times, and each module is three
separable convs with a 1x1-conv (``conv``), identity (``sum``) or no (``none``)
shortcut. Modules apply ReLU *before* each separable conv, except the last exit-flow
module, which has ReLU after each depthwise and pointwise BN.

The ``low_level`` tap is the official decoder end point: the second separable conv
of the last stride-4 entry-flow module (256 channels); ``mid_level`` is the same
point of the last stride-8 module (728); ``aux`` is the middle-flow output (728).
Multi-Grid sets the unit rates of the three separable convs of the last module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from segbench.models.backbones.base import Backbone, check_multi_grid
from segbench.models.backbones.layers import (
    ConvBNReLU,
    SeparableConv2d,
    init_he_unit_bn,
    scaled,
    set_conv_geometry,
)

Shortcut = Literal["conv", "sum", "none"]

# entry-flow modules as (depth, stride); each has three separable convs of that depth
_ENTRY: dict[str, tuple[tuple[int, int], ...]] = {
    "xception65": ((128, 2), (256, 2), (728, 2)),
    "xception71": ((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)),
}
_MIDDLE_UNITS = 16


class XceptionModule(nn.Module):
    """Three separable convs (the third one strides) plus a shortcut.

    ``forward`` returns the module output and the second separable conv's output,
    the point DeepLab's decoder taps for low-level features.
    """

    def __init__(
        self,
        in_channels: int,
        depths: Sequence[int],
        stride: int,
        shortcut: Shortcut,
        activation_in_separable: bool = False,
    ) -> None:
        super().__init__()
        chans = [in_channels, *depths]
        self.stride = stride
        self.pre_activation = not activation_in_separable
        self.separable = nn.ModuleList(
            SeparableConv2d(chans[i], chans[i + 1], activation=activation_in_separable) for i in range(3)
        )
        self.shortcut_type = shortcut
        self.shortcut = None
        if shortcut == "conv":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, depths[-1], 1, bias=False), nn.BatchNorm2d(depths[-1])
            )
        self.set_stride_and_rate(stride, 1, (1, 1, 1))

    def set_stride_and_rate(self, stride: int, rate: int, unit_rates: Sequence[int]) -> None:
        for i, (conv, unit_rate) in enumerate(zip(self.separable, unit_rates, strict=True)):
            conv.set_stride_and_rate(stride if i == 2 else 1, rate * unit_rate)
        if self.shortcut is not None:
            set_conv_geometry(self.shortcut[0], stride, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        residual = x
        taps = []
        for conv in self.separable:
            residual = conv(residual.relu() if self.pre_activation else residual)
            taps.append(residual)
        if self.shortcut is not None:
            residual = residual + self.shortcut(x)
        elif self.shortcut_type == "sum":
            residual = residual + x
        return residual, taps[1]


class XceptionBackbone(Backbone):
    """Aligned Xception: entry flow, middle flow (x16), exit flow (2048 channels)."""

    def __init__(
        self, name: str, output_stride: int = 32, width: float = 1.0, multi_grid: Sequence[int] | None = None
    ) -> None:
        entry = [(scaled(d, width), s) for d, s in _ENTRY[name]]
        middle, exit1, exit2 = scaled(728, width), scaled(1024, width), scaled(1536, width)
        out = scaled(2048, width)
        # the last stride-4 / stride-8 entry modules (before their own stride) feed the decoder
        stride, low, mid = 2, 0, 0
        for i, (_, s) in enumerate(entry):
            low, mid = (i if stride == 4 else low), (i if stride == 8 else mid)
            stride *= s
        super().__init__(
            name, {"low_level": entry[low][0], "mid_level": entry[mid][0], "aux": middle, "out": out}
        )
        self._low_index, self._mid_index = low, mid
        self.multi_grid = check_multi_grid(name, multi_grid, 3)
        self.stem = nn.Sequential(
            ConvBNReLU(3, scaled(32, width)), ConvBNReLU(scaled(32, width), scaled(64, width))
        )
        channels = scaled(64, width)
        self.entry_flow = nn.ModuleList()
        for depth, s in entry:
            self.entry_flow.append(XceptionModule(channels, (depth,) * 3, s, "conv"))
            channels = depth
        self.middle_flow = nn.ModuleList(
            XceptionModule(middle, (middle,) * 3, 1, "sum") for _ in range(_MIDDLE_UNITS)
        )
        self.exit_flow = nn.ModuleList(
            [
                XceptionModule(channels, (middle, exit1, exit1), 2, "conv"),
                XceptionModule(exit1, (exit2, exit2, out), 1, "none", activation_in_separable=True),
            ]
        )
        init_he_unit_bn(self)
        self.set_output_stride(output_stride)

    def _units(self) -> list[XceptionModule]:
        return [*self.entry_flow, *self.middle_flow, *self.exit_flow]

    def unit_strides(self) -> list[int]:
        return [2] + [unit.stride for unit in self._units()]

    def apply_plan(self, plan: list[tuple[int, int]]) -> None:
        set_conv_geometry(self.stem[0][0], plan[0][0], plan[0][1])
        units = self._units()
        for i, ((stride, rate), unit) in enumerate(zip(plan[1:], units, strict=True)):
            unit_rates = self.multi_grid if i == len(units) - 1 else (1, 1, 1)
            unit.set_stride_and_rate(stride, rate, unit_rates)

    def extract(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stem(x)
        features: dict[str, Tensor] = {}
        for i, unit in enumerate(self.entry_flow):
            x, tap = unit(x)
            if i == self._low_index:
                features["low_level"] = tap
            if i == self._mid_index:
                features["mid_level"] = tap
        for unit in self.middle_flow:
            x, _ = unit(x)
        features["aux"] = x
        for unit in self.exit_flow:
            x, _ = unit(x)
        features["out"] = x
        return features
