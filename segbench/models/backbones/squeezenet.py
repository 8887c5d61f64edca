"""SqueezeNet 1.1 ``features`` (torchvision's layout and Fire modules) as a backbone.

Native output stride 16: a stride-2 conv and three stride-2 max-pools. Output
stride 8 turns the third pool into a 3x3 stride-1 pool (padding 1, as DeepLab v1
did with VGG's pools) and dilates the 3x3 expand convs of the four Fire modules
after it by 2. Stride 32 is not reachable and is refused.

The pools are unpadded with ``ceil_mode`` and the first conv is unpadded, so very
small inputs do not fit; :attr:`min_input_size` says how small is too small.
At ``width=1`` the module list, names and shapes are exactly torchvision's
``squeezenet1_1().features`` (an ImageNet checkpoint's ``features.*`` loads).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.squeezenet import Fire

from segbench.models.backbones.base import Backbone, no_multi_grid, sequential_min_input_size, tap_sequential
from segbench.models.backbones.layers import scaled, set_conv_geometry

# torchvision's SqueezeNet 1.1: "M" = 3x3/2 max-pool (ceil mode); tuples are Fire(squeeze, expand).
_LAYOUT: tuple[str | tuple[int, int], ...] = (
    "M", (16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192), (64, 256), (64, 256)
)  # fmt: skip


class SqueezeNetBackbone(Backbone):
    """Fire3 (128 ch, stride 4), Fire5 (256 ch, stride 8, also ``aux``), Fire9 (512 ch)."""

    def __init__(
        self, name: str, output_stride: int = 16, width: float = 1.0, multi_grid: Sequence[int] | None = None
    ) -> None:
        no_multi_grid(name, multi_grid)
        stem = scaled(64, width)
        layers: list[nn.Module] = [nn.Conv2d(3, stem, kernel_size=3, stride=2), nn.ReLU(inplace=True)]
        channels = stem
        for item in _LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            else:
                squeeze, expand = (scaled(c, width) for c in item)
                layers.append(Fire(channels, squeeze, expand, expand))
                channels = 2 * expand
        super().__init__(
            name,
            {
                "low_level": 2 * scaled(64, width),
                "mid_level": 2 * scaled(128, width),
                "aux": 2 * scaled(128, width),
                "out": channels,
            },
        )
        self.features = nn.Sequential(*layers)
        self._taps = {4: "low_level", 7: "mid_level", 12: "out"}
        _init_weights(self)
        self.set_output_stride(output_stride)

    def unit_strides(self) -> list[int]:
        return [2, 1] + [2 if item == "M" else 1 for item in _LAYOUT]

    def apply_plan(self, plan: list[tuple[int, int]]) -> None:
        for (stride, rate), module in zip(plan, self.features, strict=True):
            if isinstance(module, nn.MaxPool2d):
                # native: 3x3/2 unpadded (ceil mode); stride removed: 3x3/1 'same' pooling
                module.stride, module.padding = stride, (0 if stride == 2 else 1)
            elif isinstance(module, Fire):
                set_conv_geometry(module.expand3x3, 1, rate)

    def compute_min_input_size(self) -> int:
        return sequential_min_input_size(self.features)

    def extract(self, x: Tensor) -> dict[str, Tensor]:
        out = tap_sequential(self.features, self._taps, x)
        out["aux"] = out["mid_level"]
        return out


def _init_weights(model: nn.Module) -> None:
    # torchvision's SqueezeNet initialisation of the feature convs.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
