"""The training objective: pixel-wise cross-entropy plus the weighted auxiliary loss.

PSPNet (Table 2) and the torchvision references add ``aux_weight`` (α = 0.4) times
the auxiliary head's cross-entropy to the main one; ``aux_weight=None`` trains
without it even when the model has an aux head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from segbench.errors import UserError


def segmentation_loss(outputs: Any, target: Tensor, aux_weight: float | None, ignore_index: int) -> Tensor:
    """Mean cross-entropy over *labelled* pixels, plus ``aux_weight`` × the aux head's.

    The mean is sum / count with the count at least 1: a crop that is all
    ``ignore_index`` contributes zero instead of the ``0 / 0 = NaN`` that
    ``reduction="mean"`` gives and the divergence check would report.
    Logits of another size than the target are resized to it (bilinear).
    """
    if not isinstance(outputs, Mapping) or "out" not in outputs:
        raise UserError(
            f"the model returned {type(outputs).__name__}; segbench models return a dict {{'out': logits}}"
        )
    labelled = (target != ignore_index).sum().clamp_min(1)
    loss = _summed_cross_entropy(outputs["out"], target, ignore_index) / labelled
    if aux_weight and "aux" in outputs:
        loss = loss + aux_weight * (_summed_cross_entropy(outputs["aux"], target, ignore_index) / labelled)
    return loss


def _summed_cross_entropy(logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
