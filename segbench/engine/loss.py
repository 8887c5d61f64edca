"""The training objective: pixel-wise cross-entropy plus the weighted auxiliary loss.

PSPNet (Table 2) and the torchvision references add ``aux_weight`` (α = 0.4) times
the auxiliary head's cross-entropy to the main one; ``aux_weight=None`` trains
without it even when the model has an aux head. A one-channel head (a sigmoid
binary model on a two-class dataset) is trained with binary cross-entropy on its
logit, target 1 = foreground, as sigmoid segmentation models are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def segmentation_loss(
    heads: Sequence[Tensor], target: Tensor, aux_weight: float | None, ignore_index: int
) -> Tensor:
    """Mean cross-entropy over *labelled* pixels of ``heads[0]``, plus ``aux_weight`` × each aux head's.

    ``heads`` is ``(main, *aux)`` as :func:`segbench.models.outputs.model_heads`
    gives them. The mean is sum / count with the count at least 1: a crop that
    is all ``ignore_index`` contributes zero instead of the ``0 / 0 = NaN`` that
    ``reduction="mean"`` gives and the divergence check would report.
    Logits of another size than the target are resized to it (bilinear).
    """
    labelled = (target != ignore_index).sum().clamp_min(1)
    main, *aux = heads
    loss = _summed_loss(main, target, ignore_index) / labelled
    if aux_weight:
        for head in aux:
            loss = loss + aux_weight * (_summed_loss(head, target, ignore_index) / labelled)
    return loss


def _summed_loss(logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if logits.shape[1] == 1:
        keep = target != ignore_index
        return F.binary_cross_entropy_with_logits(
            logits[:, 0].float(),
            torch.where(keep, target, 0).to(torch.float32),
            weight=keep.to(torch.float32),
            reduction="sum",
        )
    return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
