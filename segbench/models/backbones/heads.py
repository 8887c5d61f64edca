"""Pieces every segmentation head on these backbones shares (PSPNet, DeepLab v3 / v3+).

They live next to the backbones rather than in one family's module so that no
family imports another: the conv head of PSPNet's classifier and of every aux
head, the aux head's construction and outputs, the official code's bilinear
resize, and the two checks that turn torch's
obscure failures into :class:`~segbench.errors.UserError`; every family's builder
(FCN, CGNet and U-Net too) checks its class count with :func:`check_num_classes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from segbench.errors import UserError
from segbench.models.backbones.layers import ConvBNReLU


def upsample(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize with ``align_corners=True``, as the official PSPNet and DeepLab code."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class ConvHead(nn.Sequential):
    """3x3 conv + BN + ReLU, dropout 0.1, 1x1 classifier: PSPNet's head (512) and aux head (256).

    The aux head is torchvision's ``FCNHead`` shape too (``in/4`` = 256 for ResNet-50/101's res4).
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__(
            ConvBNReLU(in_channels, channels, 3), nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1)
        )


def aux_head(aux_in: int, channels: int | None, num_classes: int) -> ConvHead | None:
    """PSPNet's deep supervision on the backbone's ``aux`` features (``aux_in`` channels); None: no head."""
    return ConvHead(aux_in, channels, num_classes) if channels is not None else None


def head_outputs(
    model: nn.Module, logits: Tensor, features: Mapping[str, Tensor], size: Sequence[int]
) -> dict[str, Tensor]:
    """``{"out": logits}`` resized to ``size``, plus ``"aux"`` from ``model.aux_classifier`` while training.

    The output of every model built on these backbones: the aux logits exist only for the
    training loss, so evaluation never computes them.
    """
    result = {"out": upsample(logits, size)}
    if model.training and model.aux_classifier is not None:
        result["aux"] = upsample(model.aux_classifier(features["aux"]), size)
    return result


def check_batchnorm_batch(module: nn.Module, x: Tensor, values_per_channel: int, what: str) -> None:
    """BatchNorm over one value per channel cannot train; say why instead of torch's message."""
    if module.training and x.shape[0] * values_per_channel == 1:
        raise UserError(
            f"{what} normalises a 1x1 map with BatchNorm: training needs a batch size of at least 2"
        )


def check_num_classes(num_classes: int) -> None:
    """Every builder's class-count check (not a catalog option, so the entry cannot check it)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be a positive integer; got {num_classes!r}")
