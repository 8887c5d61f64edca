"""CGNet: Context Guided Network (Wu, Tang, Zhang & Zhang, arXiv 1811.08201).

Follows the official code (github.com/wutianyiRosun/CGNet, ``model/CGNet.py``)
module for module, under its module names, so its checkpoints load:

* stage 1: three 3x3 ConvBNPReLU (32 channels, the first with stride 2);
* stage 2: a down-sampling CG block to 64 channels and ``M - 1`` CG blocks
  (F_sur dilation 2, F_glo reduction 8); stage 3: a down-sampling CG block to
  128 channels and ``N - 1`` CG blocks (dilation 4, reduction 16);
* input injection: the image average-pooled to 1/2 and 1/4 is concatenated into
  stages 2 and 3; each stage ends in BN + PReLU over the concatenation;
* classifier: a 1x1 convolution (no bias) on stage 3's 256 channels, output
  stride 8, upsampled bilinearly to the input.

A CG block reduces its input with a 1x1 ConvBNPReLU to half its channels, then
F_loc (3x3 channel-wise conv) and F_sur (3x3 dilated channel-wise conv) see the
same map; F_joi concatenates them with BN + PReLU, and F_glo re-weights the
channels from global average pooling (two fully connected layers, as SE). The
down-sampling block uses a 3x3 stride-2 ConvBNPReLU instead of the 1x1 and a
1x1 conv after F_joi to halve the concatenation.

The ablation toggles of the paper: ``f_loc``/``f_sur``/``f_glo`` remove a
branch (with one of F_loc/F_sur left, it takes all the block's channels so the
widths stay), ``input_injection``, ``activation`` (PReLU or ReLU), ``residual``
(``grl``: input + F_glo(F_joi), the official code; ``lrl``: F_glo(input +
F_joi)) and ``conv1x1_after_channelwise`` (a 1x1 conv after F_loc and after
F_sur, as depthwise-separable convolutions have; the paper finds it hurts).
CGNet_M3N21 with 19 classes has the official 496,306 parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.backbones.heads import check_num_classes
from segbench.models.catalog.cgnet import ENTRIES
from segbench.models.weights import load_weights

__all__ = ["CGNet", "ContextGuidedBlock", "ContextGuidedDownBlock", "GlobalContext", "build_cgnet"]

_ENTRY = ENTRIES[0]
_STAGE_WIDTHS = (32, 64, 128)


def _activation(name: str, channels: int) -> nn.Module:
    return nn.PReLU(channels) if name == "prelu" else nn.ReLU(inplace=True)


class Conv(nn.Module):
    """A bias-free convolution with "same" padding (the official ``Conv``/channel-wise convs).

    Why a wrapper: the official checkpoints name these weights ``<layer>.conv.weight``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, groups: int = 1
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=(kernel_size - 1) // 2 * dilation,
            dilation=dilation,
            groups=groups,
            bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class BNAct(nn.Module):
    """BatchNorm (eps 1e-3, as the official code) + PReLU or ReLU."""

    def __init__(self, channels: int, activation: str = "prelu") -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=1e-3)
        self.act = _activation(activation, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class ConvBNAct(nn.Module):
    """The official ``ConvBNPReLU``: bias-free conv, BN, activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        activation: str = "prelu",
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)
        self.act = _activation(activation, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class GlobalContext(nn.Module):
    """F_glo: channel weights in (0, 1) from the globally pooled joint feature (SE-like)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(self.avg_pool(x).flatten(1))
        return x * weights[:, :, None, None]


class _JointFeature(nn.Module):
    """F_loc and F_sur on one map, concatenated: the part both CG blocks share."""

    def _build_branches(
        self, channels: int, dilation: int, f_loc: bool, f_sur: bool, pointwise: bool
    ) -> None:
        self.F_loc = Conv(channels, channels, 3, groups=channels) if f_loc else None
        self.F_sur = Conv(channels, channels, 3, dilation=dilation, groups=channels) if f_sur else None
        self.loc_pointwise = Conv(channels, channels, 1) if pointwise and f_loc else None
        self.sur_pointwise = Conv(channels, channels, 1) if pointwise and f_sur else None

    def joint(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for branch, pointwise in ((self.F_loc, self.loc_pointwise), (self.F_sur, self.sur_pointwise)):
            if branch is not None:
                y = branch(x)
                features.append(pointwise(y) if pointwise is not None else y)
        return torch.cat(features, 1) if len(features) > 1 else features[0]


class ContextGuidedBlock(_JointFeature):
    """The CG block: 1x1 reduction, F_loc || F_sur, F_joi (BN + act), F_glo, residual."""

    def __init__(
        self,
        channels: int,
        dilation: int = 2,
        reduction: int = 16,
        *,
        f_loc: bool = True,
        f_sur: bool = True,
        f_glo: bool = True,
        activation: str = "prelu",
        residual: str = "grl",
        pointwise: bool = False,
    ) -> None:
        super().__init__()
        branch_channels = channels // 2 if f_loc and f_sur else channels
        self.conv1x1 = ConvBNAct(channels, branch_channels, 1, activation=activation)
        self._build_branches(branch_channels, dilation, f_loc, f_sur, pointwise)
        self.bn_prelu = BNAct(channels, activation)
        self.F_glo = GlobalContext(channels, reduction) if f_glo else None
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joint = self.bn_prelu(self.joint(self.conv1x1(x)))
        if self.residual == "lrl":  # local residual: the shortcut meets F_joi
            joint = x + joint
            return self.F_glo(joint) if self.F_glo is not None else joint
        refined = self.F_glo(joint) if self.F_glo is not None else joint
        return x + refined  # global residual: the shortcut meets F_glo


class ContextGuidedDownBlock(_JointFeature):
    """The down-sampling CG block: (H, W, C_in) -> (H/2, W/2, C_out), no residual."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilation: int = 2,
        reduction: int = 16,
        *,
        f_loc: bool = True,
        f_sur: bool = True,
        f_glo: bool = True,
        activation: str = "prelu",
        pointwise: bool = False,
    ) -> None:
        super().__init__()
        joint_channels = out_channels * (int(f_loc) + int(f_sur))
        self.conv1x1 = ConvBNAct(in_channels, out_channels, 3, stride=2, activation=activation)
        self._build_branches(out_channels, dilation, f_loc, f_sur, pointwise)
        self.bn = nn.BatchNorm2d(joint_channels, eps=1e-3)
        self.act = _activation(activation, joint_channels)
        self.reduce = Conv(joint_channels, out_channels, 1)
        self.F_glo = GlobalContext(out_channels, reduction) if f_glo else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joint = self.reduce(self.act(self.bn(self.joint(self.conv1x1(x)))))
        return self.F_glo(joint) if self.F_glo is not None else joint


class InputInjection(nn.Module):
    """The image average-pooled ``times`` times by 2 (3x3, stride 2, as the official code)."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.pool = nn.ModuleList(nn.AvgPool2d(3, stride=2, padding=1) for _ in range(times))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for pool in self.pool:
            x = pool(x)
        return x


class CGNet(nn.Module):
    """CGNet_M{M}N{N}; see the module docstring."""

    def __init__(
        self,
        num_classes: int,
        M: int = 3,  # the paper's names for the stage depths
        N: int = 21,
        dilation: Sequence[int] = (2, 4),
        reduction: Sequence[int] = (8, 16),
        *,
        f_loc: bool = True,
        f_sur: bool = True,
        f_glo: bool = True,
        input_injection: bool = True,
        activation: str = "prelu",
        residual: str = "grl",
        conv1x1_after_channelwise: bool = False,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        c1, c2, c3 = (max(2, 2 * round(c * width / 2)) for c in _STAGE_WIDTHS)
        block = {
            "f_loc": f_loc,
            "f_sur": f_sur,
            "f_glo": f_glo,
            "activation": activation,
            "pointwise": conv1x1_after_channelwise,
        }
        injected = 3 if input_injection else 0

        self.level1_0 = ConvBNAct(3, c1, 3, stride=2, activation=activation)
        self.level1_1 = ConvBNAct(c1, c1, 3, activation=activation)
        self.level1_2 = ConvBNAct(c1, c1, 3, activation=activation)
        self.sample1 = InputInjection(1) if input_injection else None
        self.sample2 = InputInjection(2) if input_injection else None
        self.b1 = BNAct(c1 + injected, activation)

        self.level2_0 = ContextGuidedDownBlock(c1 + injected, c2, dilation[0], reduction[0], **block)
        self.level2 = nn.ModuleList(
            ContextGuidedBlock(c2, dilation[0], reduction[0], residual=residual, **block)
            for _ in range(M - 1)
        )
        self.bn_prelu_2 = BNAct(2 * c2 + injected, activation)

        self.level3_0 = ContextGuidedDownBlock(2 * c2 + injected, c3, dilation[1], reduction[1], **block)
        self.level3 = nn.ModuleList(
            ContextGuidedBlock(c3, dilation[1], reduction[1], residual=residual, **block)
            for _ in range(N - 1)
        )
        self.bn_prelu_3 = BNAct(2 * c3, activation)
        self.classifier = nn.Sequential(Conv(2 * c3, num_classes, 1))
        self.aux_classifier = None

        for module in self.modules():  # the official initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)

    @property
    def output_stride(self) -> int:
        return 8

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # The concatenation orders are the official code's: its weights depend on them.
        stage1 = self.level1_2(self.level1_1(self.level1_0(x)))
        if self.sample1 is not None:
            stage1 = torch.cat([stage1, self.sample1(x)], 1)
        down2 = self.level2_0(self.b1(stage1))
        stage2 = down2
        for layer in self.level2:
            stage2 = layer(stage2)
        parts = [stage2, down2] + ([self.sample2(x)] if self.sample2 is not None else [])
        down3 = self.level3_0(self.bn_prelu_2(torch.cat(parts, 1)))
        stage3 = down3
        for layer in self.level3:
            stage3 = layer(stage3)
        logits = self.classifier(self.bn_prelu_3(torch.cat([down3, stage3], 1)))
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def build_cgnet(
    num_classes: int,
    *,
    M: int = 3,  # the paper's names for the stage depths
    N: int = 21,
    dilation: Sequence[int] = (2, 4),
    reduction: Sequence[int] = (8, 16),
    f_loc: bool = True,
    f_sur: bool = True,
    f_glo: bool = True,
    input_injection: bool = True,
    activation: str = "prelu",
    residual: str = "grl",
    conv1x1_after_channelwise: bool = False,
    width: float = 1.0,
    weights: str | None = None,
) -> CGNet:
    """The catalog's ``cgnet`` (defaults: the official CGNet_M3N21).

    Every option is checked by the catalog entry (types, ranges, choices and the
    combinations it refuses), so a direct call and a suite refuse the same values
    with the same messages.
    """
    check_num_classes(num_classes)
    options = _ENTRY.resolve(
        {
            "M": M,
            "N": N,
            "dilation": dilation,
            "reduction": reduction,
            "f_loc": f_loc,
            "f_sur": f_sur,
            "f_glo": f_glo,
            "input_injection": input_injection,
            "activation": activation,
            "residual": residual,
            "conv1x1_after_channelwise": conv1x1_after_channelwise,
            "width": width,
            "weights": weights,
        }
    )
    path = options.pop("weights")  # not the network's: loaded into it once built
    model = CGNet(num_classes, **options)
    if path is not None:
        load_weights(model, path)
    return model
