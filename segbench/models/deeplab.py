"""DeepLab v3 (Chen et al. 2017) and v3+ (Chen et al., ECCV 2018).

Faithful to the official TensorFlow code (``research/deeplab/model.py``):

* **ASPP** on the backbone output: a 1x1 branch, one 3x3 atrous branch per rate and
  (``image_pooling``) global average pooling + 1x1 conv, all 256 wide with BN + ReLU,
  concatenated, projected by 1x1 conv 256 + BN + ReLU, dropout 0.1. Rates are given
  at output stride 16 and scale with it (doubled at 8, halved at 32), also when
  :meth:`DeepLab.set_output_stride` switches a trained model.
* **v3**: a 1x1 classifier on the ASPP output, logits resized to the input.
  (torchvision's DeepLabV3 adds a 3x3 conv after ASPP; the official code does not.)
* **v3+ decoder**: the low-level features are projected by 1x1 conv (48) + BN + ReLU,
  the encoder output is resized to their size and concatenated, then refined by
  ``decoder_convs`` (two 3x3 convs 256 by default) before the classifier. With
  ``low_level="conv2+conv3"`` the refinement runs twice, with the stride-8
  features first, then the stride-4 ones (Table 2's last row).
* ``separable`` makes the ASPP's atrous convs and the decoder's 3x3 convs
  depthwise-separable with BN + ReLU after the depthwise and pointwise parts.

``decoder=False`` is the v3 head; ``aux`` adds the PSPNet-style head on ``aux`` features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from segbench.errors import UserError
from segbench.models.backbones import RESNETS, build_backbone
from segbench.models.backbones.base import Backbone
from segbench.models.backbones.heads import (
    aux_head,
    check_batchnorm_batch,
    check_num_classes,
    head_outputs,
    upsample,
)
from segbench.models.backbones.layers import ConvBNReLU, SeparableConv2d, scaled, set_conv_geometry
from segbench.models.catalog.deeplab import parse_decoder_convs
from segbench.models.weights import load_weights

LowLevel = Literal["conv2", "conv2+conv3"]
_LOW_LEVEL_TAPS: dict[str, tuple[str, ...]] = {
    "conv2": ("low_level",),
    "conv2+conv3": ("mid_level", "low_level"),  # deepest first: the decoder upsamples step by step
}


@dataclass(frozen=True)
class DecoderConvs:
    """The refinement after the concatenation: ``count`` convs ``kernel`` x ``kernel``, ``channels`` wide."""

    kernel: int
    channels: int
    count: int

    @classmethod
    def parse(cls, spec: str) -> DecoderConvs:
        """``"3x3_256x2"`` = [3x3, 256] x 2 (the paper's notation); ``"1x1_256"`` = one 1x1 conv."""
        try:
            return cls(*parse_decoder_convs(spec))
        except ValueError as exc:
            raise UserError(str(exc)) from None


def rate_at(rate: int, output_stride: int) -> int:
    """An atrous rate given at output stride 16, at ``output_stride``."""
    if (rate * 16) % output_stride:
        raise UserError(
            f"ASPP rate {rate} (given at output stride 16) has no integer equivalent at output stride "
            f"{output_stride}; use rates divisible by {output_stride // 16 if output_stride > 16 else 1}"
        )
    return rate * 16 // output_stride


class ImagePooling(nn.Sequential):
    """ASPP's image-level branch: global average pooling, 1x1 conv + BN + ReLU, broadcast back."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        check_batchnorm_batch(self, x, 1, "ASPP's image pooling branch")
        return upsample(super().forward(x), x.shape[-2:])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with rates given at output stride 16."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        rates: Sequence[int],
        image_pooling: bool = True,
        separable: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.rates = tuple(rates)
        atrous = [
            SeparableConv2d(in_channels, channels, rate=r)
            if separable
            else ConvBNReLU(in_channels, channels, 3, r)
            for r in self.rates
        ]
        self.branches = nn.ModuleList([ConvBNReLU(in_channels, channels, 1), *atrous])
        self.pooling = ImagePooling(in_channels, channels) if image_pooling else None
        n = len(self.branches) + (self.pooling is not None)
        self.project = nn.Sequential(ConvBNReLU(n * channels, channels, 1), nn.Dropout(dropout))
        self.out_channels = channels

    def set_output_stride(self, output_stride: int) -> None:
        rates = [rate_at(r, output_stride) for r in self.rates]  # all checked before any changes
        for rate, branch in zip(rates, self.branches[1:], strict=True):
            if isinstance(branch, SeparableConv2d):
                branch.set_stride_and_rate(1, rate)
            else:
                set_conv_geometry(branch[0], 1, rate)

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        if self.pooling is not None:
            outs.append(self.pooling(x))
        return self.project(torch.cat(outs, dim=1))


class Decoder(nn.Module):
    """DeepLab v3+'s decoder over one or more low-level taps, deepest first."""

    def __init__(
        self,
        in_channels: int,
        low_level_in: Sequence[int],
        low_level_channels: int,
        convs: DecoderConvs,
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.projections = nn.ModuleList(ConvBNReLU(c, low_level_channels, 1) for c in low_level_in)
        self.stages = nn.ModuleList()
        channels = in_channels
        for _ in low_level_in:
            layers: list[nn.Module] = []
            c_in = channels + low_level_channels
            for _ in range(convs.count):
                if separable and convs.kernel == 3:
                    layers.append(SeparableConv2d(c_in, convs.channels))
                else:
                    layers.append(ConvBNReLU(c_in, convs.channels, convs.kernel))
                c_in = convs.channels
            self.stages.append(nn.Sequential(*layers))
            channels = convs.channels
        self.out_channels = channels

    def forward(self, x: Tensor, low_levels: Sequence[Tensor]) -> Tensor:
        for projection, stage, feature in zip(self.projections, self.stages, low_levels, strict=True):
            x = stage(torch.cat([upsample(x, feature.shape[-2:]), projection(feature)], dim=1))
        return x


class DeepLab(nn.Module):
    """``backbone`` -> ``aspp`` -> ``decoder`` (v3+, or None for v3) -> ``classifier``."""

    def __init__(
        self,
        backbone: Backbone,
        aspp: ASPP,
        decoder: Decoder | None,
        low_level_taps: Sequence[str],
        num_classes: int,
        aux_channels: int | None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.aspp = aspp
        self.decoder = decoder
        self.low_level_taps = tuple(low_level_taps) if decoder is not None else ()
        head_in = decoder.out_channels if decoder is not None else aspp.out_channels
        self.classifier = nn.Conv2d(head_in, num_classes, 1)
        self.aux_classifier = aux_head(backbone.channels["aux"], aux_channels, num_classes)
        self.aspp.set_output_stride(backbone.output_stride)

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def set_output_stride(self, output_stride: int) -> None:
        """Move backbone strides and ASPP rates together; no weight changes (train 16, eval 8)."""
        if output_stride in self.backbone.supported_output_strides:
            for rate in self.aspp.rates:
                rate_at(rate, output_stride)
        self.backbone.set_output_stride(output_stride)
        self.aspp.set_output_stride(output_stride)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        y = self.aspp(features["out"])
        if self.decoder is not None:
            y = self.decoder(y, [features[tap] for tap in self.low_level_taps])
        return head_outputs(self, self.classifier(y), features, size)


def build_deeplabv3(
    *,
    num_classes: int,
    backbone: str = "resnet101",
    output_stride: int = 16,
    aspp_rates: Sequence[int] = (6, 12, 18),
    image_pooling: bool = True,
    multi_grid: Sequence[int] | None = None,
    aux: bool = False,
    deep_stem: bool | None = None,
    width: float = 1.0,
    weights: str | None = None,
) -> DeepLab:
    """DeepLab v3 as the catalog entry ``deeplabv3`` describes (defaults: the paper's ResNet-101).

    v3 is v3+ without its decoder (and without separable convs): one builder makes both.
    """
    return build_deeplabv3plus(
        num_classes=num_classes,
        backbone=backbone,
        output_stride=output_stride,
        aspp_rates=aspp_rates,
        image_pooling=image_pooling,
        multi_grid=multi_grid,
        decoder=False,
        aux=aux,
        deep_stem=deep_stem,
        width=width,
        weights=weights,
    )


def build_deeplabv3plus(
    *,
    num_classes: int,
    backbone: str = "resnet101",
    output_stride: int = 16,
    aspp_rates: Sequence[int] = (6, 12, 18),
    image_pooling: bool = True,
    multi_grid: Sequence[int] | None = None,
    decoder: bool = True,
    low_level_channels: int = 48,
    decoder_convs: str = "3x3_256x2",
    low_level: LowLevel = "conv2",
    separable: bool = False,
    aux: bool = False,
    deep_stem: bool | None = None,
    width: float = 1.0,
    weights: str | None = None,
) -> DeepLab:
    """DeepLab v3+ as the catalog entry ``deeplabv3plus`` describes (defaults: Table 2's best row)."""
    if (
        isinstance(low_level_channels, bool)
        or not isinstance(low_level_channels, int)
        or low_level_channels < 1
    ):
        raise UserError(
            f"low_level_channels must be a positive integer (the paper: 48); got {low_level_channels!r}"
        )
    if low_level not in _LOW_LEVEL_TAPS:
        raise UserError(
            f"low_level must be one of {', '.join(map(repr, _LOW_LEVEL_TAPS))}; got {low_level!r}"
        )
    convs = DecoderConvs.parse(decoder_convs) if decoder else None
    check_num_classes(num_classes)
    rates = tuple(aspp_rates)
    if not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in rates):
        raise UserError(
            f"aspp_rates must be positive integers (at output stride 16), e.g. [6, 12, 18]; got {rates}"
        )
    grid = default_multi_grid(backbone) if multi_grid is None else tuple(multi_grid)
    # TF DeepLab's rule on ResNets too: evaluation at another output stride than training
    # (Table 3) is only the same network, sampled more densely, when the strided conv keeps its rate.
    net = build_backbone(
        backbone,
        output_stride=output_stride,
        width=width,
        multi_grid=grid,
        deep_stem=bool(deep_stem),
        strided_conv_keeps_rate=True,
    )
    channels = scaled(256, width)
    aspp = ASPP(net.channels["out"], channels, rates, image_pooling, separable)
    head: Decoder | None = None
    taps: tuple[str, ...] = ()
    if convs is not None:
        taps = _LOW_LEVEL_TAPS[low_level]
        head = Decoder(
            channels,
            [net.channels[tap] for tap in taps],
            scaled(low_level_channels, width),
            DecoderConvs(convs.kernel, scaled(convs.channels, width), convs.count),
            separable,
        )
    model = DeepLab(net, aspp, head, taps, num_classes, scaled(256, width) if aux else None)
    if weights:
        load_weights(model, weights)
    return model


def default_multi_grid(backbone: str) -> tuple[int, ...] | None:
    """DeepLab v3's Multi-Grid (1, 2, 4) on ResNets (cut to the units of layer4); none elsewhere."""
    if backbone in RESNETS:
        return (1, 2) if backbone == "resnet18" else (1, 2, 4)
    return None
