"""PSPNet (Zhao et al., CVPR 2017): a dilated backbone and the pyramid pooling module.

Faithful to the official PyTorch code (hszhao/semseg): ResNet with the deep 3x3
stem at output stride 8 (res4 and res5 dilated by 2 and 4); the PPM pools the
res5 features into ``bins`` x ``bins`` grids, reduces each level to
in_channels / len(bins) with 1x1 conv + BN + ReLU, upsamples bilinearly and
concatenates with its input; the head is 3x3 conv 512 + BN + ReLU, dropout 0.1
and a 1x1 classifier. Deep supervision (``aux``) puts 3x3 conv 256 + BN + ReLU,
dropout 0.1 and a 1x1 classifier on res4; its loss weight (0.4) is a training setting.

Resizing uses ``align_corners=True`` as the official code does. The ablations of
PSPNet's Table 1 are options: ``ppm=False`` is the dilated-FCN baseline (the module
and its parameters are gone), ``bins``, ``pooling`` avg/max, ``dim_reduction``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from segbench.errors import UserError
from segbench.models.backbones import RESNETS, build_backbone
from segbench.models.backbones.base import Backbone
from segbench.models.backbones.heads import (
    ConvHead,
    aux_head,
    check_batchnorm_batch,
    check_num_classes,
    head_outputs,
    upsample,
)
from segbench.models.backbones.layers import ConvBNReLU, scaled
from segbench.models.catalog.pspnet import ENTRIES
from segbench.models.weights import load_weights

Pooling = Literal["avg", "max"]
_ENTRY = ENTRIES[0]


class PyramidPooling(nn.Module):
    """The pyramid pooling module: pooled levels, upsampled and concatenated with the input.

    ``dim_reduction`` puts 1x1 conv + BN + ReLU to ``in_channels // len(bins)`` on each
    level (the paper's "DR"); without it the pooled features are concatenated as they are.
    """

    def __init__(
        self, in_channels: int, bins: Sequence[int], pooling: Pooling = "avg", dim_reduction: bool = True
    ) -> None:
        super().__init__()
        self.bins = tuple(bins)
        pool = nn.AdaptiveAvgPool2d if pooling == "avg" else nn.AdaptiveMaxPool2d
        reduced = in_channels // len(self.bins)
        if dim_reduction and reduced < 1:
            raise UserError(f"{len(self.bins)} PPM bins cannot share {in_channels} channels; use fewer bins")
        self.dim_reduction = dim_reduction
        self.levels = nn.ModuleList(
            nn.Sequential(pool(b), ConvBNReLU(in_channels, reduced, 1)) if dim_reduction else pool(b)
            for b in self.bins
        )
        self.out_channels = in_channels + len(self.bins) * (reduced if dim_reduction else in_channels)

    def forward(self, x: Tensor) -> Tensor:
        if self.dim_reduction:
            check_batchnorm_batch(self, x, min(self.bins) ** 2, "the PPM's 1x1 bin")
        size = x.shape[-2:]
        return torch.cat([x, *(upsample(level(x), size) for level in self.levels)], dim=1)


class PSPNet(nn.Module):
    """``backbone`` -> ``ppm`` (or None) -> ``classifier``; ``aux_classifier`` on ``aux`` features."""

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        ppm: PyramidPooling | None,
        head_channels: int,
        aux_channels: int | None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.ppm = ppm
        in_channels = ppm.out_channels if ppm is not None else backbone.channels["out"]
        self.classifier = ConvHead(in_channels, head_channels, num_classes)
        self.aux_classifier = aux_head(backbone.channels["aux"], aux_channels, num_classes)

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def set_output_stride(self, output_stride: int) -> None:
        """Evaluate at another output stride with the same weights (the PPM is stride-agnostic)."""
        self.backbone.set_output_stride(output_stride)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        y = features["out"]
        if self.ppm is not None:
            y = self.ppm(y)
        return head_outputs(self, self.classifier(y), features, size)


def build_pspnet(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int = 8,
    ppm: bool = True,
    bins: Sequence[int] = (1, 2, 3, 6),
    pooling: Pooling = "avg",
    dim_reduction: bool = True,
    aux: bool = True,
    deep_stem: bool | None = None,
    width: float = 1.0,
    weights: str | None = None,
) -> PSPNet:
    """PSPNet as the catalog entry ``pspnet`` describes (defaults: PSPNet-ResNet50 of the paper)."""
    check_num_classes(num_classes)
    # Types, ranges, choices and refused combinations, with the catalog's messages.
    _ENTRY.resolve(
        {
            "backbone": backbone,
            "output_stride": output_stride,
            "ppm": ppm,
            "bins": bins,
            "pooling": pooling,
            "dim_reduction": dim_reduction,
            "aux": aux,
            "deep_stem": deep_stem,
            "width": width,
            "weights": weights,
        }
    )
    bins = tuple(bins)
    stem = (backbone in RESNETS) if deep_stem is None else deep_stem  # the official code's deep stem
    net = build_backbone(backbone, output_stride=output_stride, width=width, deep_stem=stem)
    module = PyramidPooling(net.channels["out"], bins, pooling, dim_reduction) if ppm else None
    model = PSPNet(
        net,
        num_classes,
        module,
        head_channels=scaled(512, width),
        aux_channels=scaled(256, width) if aux else None,
    )
    if weights:
        load_weights(model, weights)
    return model
