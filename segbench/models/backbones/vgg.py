"""VGG16 ``features`` (torchvision's ``make_layers``, no BatchNorm) as a dilatable backbone.

Each of the five stages ends with a 2x2/2 max-pool. Below output stride 32 a
pool's stride is removed the DeepLab v1 way: it becomes a 3x3 stride-1 pool with
padding 1 and the convs after it dilate. At ``width=1`` names and shapes equal
torchvision's ``vgg16().features``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.vgg import make_layers

from segbench.models.backbones.base import Backbone, no_multi_grid, sequential_min_input_size, tap_sequential
from segbench.models.backbones.layers import scaled, set_conv_geometry

# torchvision's configuration "D" (VGG16): conv widths, "M" = max-pool.
_CFG_D: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)  # fmt: skip


class VGG16Backbone(Backbone):
    """pool2 (stride 4), pool3 (stride 8), pool4 (stride 16, ``aux``) and pool5 (``out``)."""

    def __init__(
        self, name: str, output_stride: int = 32, width: float = 1.0, multi_grid: Sequence[int] | None = None
    ) -> None:
        no_multi_grid(name, multi_grid)
        cfg = [c if c == "M" else scaled(int(c), width) for c in _CFG_D]
        features = make_layers(cfg, batch_norm=False)
        pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        widths = [int(cfg[i - 1]) for i, c in enumerate(cfg) if c == "M"]
        super().__init__(
            name, {"low_level": widths[1], "mid_level": widths[2], "aux": widths[3], "out": widths[4]}
        )
        self.features = features
        self._taps = dict(zip(pools[1:], ("low_level", "mid_level", "aux", "out"), strict=True))
        _init_weights(self)
        self.set_output_stride(output_stride)

    def unit_strides(self) -> list[int]:
        return [2 if isinstance(m, nn.MaxPool2d) else 1 for m in self.features]

    def apply_plan(self, plan: list[tuple[int, int]]) -> None:
        for (stride, rate), module in zip(plan, self.features, strict=True):
            if isinstance(module, nn.MaxPool2d):
                module.kernel_size, module.stride, module.padding = (2, 2, 0) if stride == 2 else (3, 1, 1)
            elif isinstance(module, nn.Conv2d):
                set_conv_geometry(module, 1, rate)

    def compute_min_input_size(self) -> int:
        return sequential_min_input_size(self.features)

    def extract(self, x: Tensor) -> dict[str, Tensor]:
        return tap_sequential(self.features, self._taps, x)


def _init_weights(model: nn.Module) -> None:
    # torchvision's VGG initialisation of the feature convs.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
