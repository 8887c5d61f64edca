"""Small layers shared by the backbones and the heads built on them.

Conv geometry (stride, atrous rate, padding) lives in one helper because the
output-stride switch rewrites it in place on modules built elsewhere
(torchvision's blocks as well as ours).
"""

from __future__ import annotations

from torch import Tensor, nn


def scaled(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, rounded half up, at least 1.

    Plain rounding (no divisor) keeps ablation widths distinct when scaled down:
    DeepLab v3+'s low-level projections 8/16/32/48/64 stay five widths at 0.25.
    """
    return max(1, int(channels * width + 0.5))


def set_conv_geometry(conv: nn.Conv2d, stride: int, rate: int) -> None:
    """Set stride and atrous rate of ``conv``, with 'same' padding for its kernel.

    Only attributes change, never a weight: this is how a trained model moves
    between output strides.
    """
    kernel = conv.kernel_size[0]
    conv.stride = (stride, stride)
    if kernel == 1:
        conv.dilation, conv.padding = (1, 1), (0, 0)
    else:
        conv.dilation = (rate, rate)
        conv.padding = (rate * (kernel - 1) // 2,) * 2


class ConvBNReLU(nn.Sequential):
    """k x k conv (no bias) + BatchNorm + ReLU, 'same' padding at any rate."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, rate: int = 1) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False)
        set_conv_geometry(conv, 1, rate)
        super().__init__(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SeparableConv2d(nn.Module):
    """Depthwise k x k (atrous) + BN, then pointwise 1x1 + BN, as DeepLab's Xception.

    ``activation=True`` adds a ReLU after each BN (DeepLab v3+'s separable ASPP and
    decoder, Xception's exit flow); ``False`` leaves both linear, for Xception's
    pre-activation modules that apply ReLU before the conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        rate: int = 1,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, groups=in_channels, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm2d(out_channels)
        self.activation = activation
        self.set_stride_and_rate(stride, rate)

    def set_stride_and_rate(self, stride: int, rate: int) -> None:
        set_conv_geometry(self.depthwise, stride, rate)

    def forward(self, x: Tensor) -> Tensor:
        x = self.depthwise_bn(self.depthwise(x))
        if self.activation:
            x = x.relu()
        x = self.pointwise_bn(self.pointwise(x))
        return x.relu() if self.activation else x


def init_he_unit_bn(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions and identity BatchNorm: torchvision's ResNet initialisation.

    Shared by the backbones trained from scratch in CPU-size runs, so that
    every family starts from the same, well-conditioned place (the official
    PSPNet code uses it too; DeepLab's TF code a truncated normal of the same scale).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
