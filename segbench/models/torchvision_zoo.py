"""torchvision's segmentation zoo as reference entries (``torchvision.<arch>``).

The models are torchvision's own, built with ``weights=None,
weights_backbone=None`` (nothing downloads); :class:`ReferenceSegmentation`
re-parents their ``backbone``, ``classifier`` and ``aux_classifier`` under the
same names, so torchvision's state dicts (its published weights files, saved
locally) load unchanged, and changes only what segbench's convention needs:
``"aux"`` is computed and returned only while training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import segmentation
from torchvision.models.segmentation.lraspp import LRASPP

from segbench.errors import UserError
from segbench.models.catalog.torchvision_zoo import ENTRIES
from segbench.models.weights import load_weights

__all__ = [
    "ReferenceSegmentation",
    "build_deeplabv3_mobilenet_v3_large",
    "build_deeplabv3_resnet50",
    "build_deeplabv3_resnet101",
    "build_fcn_resnet50",
    "build_fcn_resnet101",
    "build_lraspp_mobilenet_v3_large",
    "build_reference",
]

_ENTRIES = {entry.name: entry for entry in ENTRIES}


class ReferenceSegmentation(nn.Module):
    """A torchvision segmentation model under segbench's output convention.

    torchvision's FCN/DeepLab return ``"aux"`` whenever they have an aux head,
    in eval too, and pay for it; here it is skipped outside training. LRASPP's
    head reads the backbone's low and high features together, the others read
    ``"out"`` only.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.classifier = model.classifier
        self.aux_classifier: nn.Module | None = getattr(model, "aux_classifier", None)
        self._head_reads_all_features = isinstance(model, LRASPP)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        logits = self.classifier(features if self._head_reads_all_features else features["out"])
        result = {"out": F.interpolate(logits, size=size, mode="bilinear", align_corners=False)}
        if self.training and self.aux_classifier is not None:
            aux = self.aux_classifier(features["aux"])
            result["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return result


def build_reference(
    arch: str, num_classes: int, *, aux: bool, weights: str | None = None
) -> ReferenceSegmentation:
    """torchvision's ``segmentation.<arch>`` with random weights, or a local ``weights`` file."""
    entry = _ENTRIES.get(f"torchvision.{arch}")
    if entry is None:
        raise UserError(f"no torchvision reference model '{arch}'; known: {', '.join(sorted(_ENTRIES))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be a positive integer, not {num_classes!r}")
    kwargs: dict[str, object] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if arch.startswith("lraspp"):
        if aux:
            raise UserError(f"{entry.name} has no auxiliary head in torchvision; use aux=false")
    else:
        kwargs["aux_loss"] = bool(aux)
    model = ReferenceSegmentation(getattr(segmentation, arch)(**kwargs))
    if weights is not None:
        load_weights(model, weights)
    return model


def _builder(arch: str) -> Callable[..., ReferenceSegmentation]:
    def build(num_classes: int, *, aux: bool, weights: str | None = None) -> ReferenceSegmentation:
        return build_reference(arch, num_classes, aux=aux, weights=weights)

    build.__name__ = build.__qualname__ = f"build_{arch}"
    build.__doc__ = f"The catalog's ``torchvision.{arch}``."
    return build


build_fcn_resnet50 = _builder("fcn_resnet50")
build_fcn_resnet101 = _builder("fcn_resnet101")
build_deeplabv3_resnet50 = _builder("deeplabv3_resnet50")
build_deeplabv3_resnet101 = _builder("deeplabv3_resnet101")
build_deeplabv3_mobilenet_v3_large = _builder("deeplabv3_mobilenet_v3_large")
build_lraspp_mobilenet_v3_large = _builder("lraspp_mobilenet_v3_large")
