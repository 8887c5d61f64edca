"""Dilated ResNet-18/34/50/101 from torchvision's blocks.

Two stems: torchvision's 7x7 conv (parameter names match torchvision's ImageNet
checkpoints) and PSPNet's deep stem of three 3x3 convs 64-64-128 (names match
the official PSPNet code's ``resnet50_v2`` initialisation: conv1..3, bn1..3).

Two dilation rules, the weights the same under both. PSPNet's official code
runs *all* units of a stage whose stride is removed at the stage's rate (res4 at
2 and res5 at 4 for output stride 8): the default. DeepLab's TF code
(``stack_blocks_dense``), and torchvision's ``replace_stride_with_dilation``,
keep the conv that lost its stride at the rate of the grid it reads, and only
what follows it at the new rate (``strided_conv_keeps_rate``, which the DeepLab
models use): then the network at output stride 8 computes, at every other
position, exactly what it computes at 16, and a model trained at 16 can be
evaluated at 8. torchvision strides a stage in its first unit's 3x3 conv (TF in
the previous block's last unit), so under that rule DeepLab v3's Multi-Grid
(1, 2, 4) on res5 at output stride 16 gives rates (1, 4, 8): the first unit's
conv is the strided one; the paper's block4 rates (2, 4, 8) sit after TF's stride.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from segbench.models.backbones.base import Backbone, check_multi_grid
from segbench.models.backbones.layers import init_he_unit_bn, scaled, set_conv_geometry

_SPECS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNetBackbone(Backbone):
    """ResNet features: res2 (``low_level``), res3, res4 (``aux``), res5 (``out``)."""

    dilate_first = True

    def __init__(
        self,
        name: str,
        output_stride: int = 32,
        width: float = 1.0,
        multi_grid: Sequence[int] | None = None,
        deep_stem: bool = False,
        strided_conv_keeps_rate: bool = False,
    ) -> None:
        block, depths = _SPECS[name]
        planes = [scaled(64 * 2**i, width) for i in range(4)]
        outs = [p * block.expansion for p in planes]
        super().__init__(name, {"low_level": outs[0], "mid_level": outs[1], "aux": outs[2], "out": outs[3]})
        self.deep_stem = deep_stem
        self.strided_conv_keeps_rate = strided_conv_keeps_rate
        self.multi_grid = check_multi_grid(name, multi_grid, depths[3])
        if deep_stem:
            stem = [scaled(64, width), scaled(64, width), scaled(128, width)]
            self.conv1 = nn.Conv2d(3, stem[0], 3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(stem[0])
            self.conv2 = nn.Conv2d(stem[0], stem[1], 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(stem[1])
            self.conv3 = nn.Conv2d(stem[1], stem[2], 3, padding=1, bias=False)
            self.bn3 = nn.BatchNorm2d(stem[2])
            inplanes = stem[2]
        else:
            inplanes = scaled(64, width)
            self.conv1 = nn.Conv2d(3, inplanes, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages = []
        for i, (p, n) in enumerate(zip(planes, depths, strict=True)):
            stages.append(_stage(block, inplanes, p, n, stride=1 if i == 0 else 2))
            inplanes = p * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        init_he_unit_bn(self)
        self.set_output_stride(output_stride)

    def unit_strides(self) -> list[int]:
        # stem (conv + max-pool) then res2..res5; a stage is one unit: it dilates as a whole
        return [4, 1, 2, 2, 2]

    def apply_plan(self, plan: list[tuple[int, int]]) -> None:
        """Each stage at its plan's rate; see ``strided_conv_keeps_rate`` for its first 3x3 conv.

        With ``strided_conv_keeps_rate`` the conv that lost its stride keeps the
        rate of the grid it reads (the rate before the stage), as torchvision's
        ``replace_stride_with_dilation`` and DeepLab's TF ``stack_blocks_dense``
        do: the network at output stride 8 then computes exactly, at every other
        position, what it computes at 16 (away from the borders), which is what
        lets DeepLab evaluate at another output stride than it trained at.
        Without it the whole stage takes the new rate (PSPNet's official code).
        """
        before = plan[0][1]
        for (stride, rate), layer in zip(
            plan[1:], (self.layer1, self.layer2, self.layer3, self.layer4), strict=True
        ):
            grid = self.multi_grid if layer is self.layer4 else (1,) * len(layer)
            for i, (unit, unit_rate) in enumerate(zip(layer, grid, strict=True)):
                strided_rate = before if i == 0 and self.strided_conv_keeps_rate else rate * unit_rate
                _set_unit(unit, stride if i == 0 else 1, rate * unit_rate, strided_rate)
            before = rate

    def extract(self, x: Tensor) -> dict[str, Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.deep_stem:
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bn3(self.conv3(x)))
        res2 = self.layer1(self.maxpool(x))
        res3 = self.layer2(res2)
        res4 = self.layer3(res3)
        return {"low_level": res2, "mid_level": res3, "aux": res4, "out": self.layer4(res4)}


def _stage(
    block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, units: int, stride: int
) -> nn.Sequential:
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(out, planes) for _ in range(1, units)]
    return nn.Sequential(*layers)


def _set_unit(unit: nn.Module, stride: int, rate: int, strided_rate: int) -> None:
    """``strided_rate`` for the unit's (nominally) strided 3x3 conv, ``rate`` for the 3x3 after it."""
    if isinstance(unit, Bottleneck):
        set_conv_geometry(unit.conv2, stride, strided_rate)  # torchvision strides the 3x3 ("ResNet v1.5")
    else:
        set_conv_geometry(unit.conv1, stride, strided_rate)
        set_conv_geometry(unit.conv2, 1, rate)
    if unit.downsample is not None:
        set_conv_geometry(unit.downsample[0], stride, 1)
