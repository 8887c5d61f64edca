"""Test-time prediction: single scale, multi-scale, horizontal flip, sliding window.

The reference implementations (DeepLab, PSPNet, mmseg's ``aug_test``) resize the
image to each scale, optionally also run its mirror image, resize every view's
logits to the label map's size, turn them into softmax probabilities and average
those. Sliding-window inference (``slide_inference``) tiles a large image with
``crop``-sized windows ``stride`` apart and averages the *logits* where windows
overlap, before the softmax.

The average of probabilities is kept in log space (``logaddexp``), so the same
tensor gives the prediction (argmax), the foreground probability (exp) and an
exact validation loss (NLL) without ``log(0)`` trouble, at any number of views.
A one-channel (sigmoid) binary model's logit ``z`` becomes the two classes'
log-probabilities ``(log σ(-z), log σ(z))`` — exactly the softmax of ``(0, z)`` —
so views average sigmoid probabilities as they average softmax ones, and the
same metrics, loss and threshold apply.

What the model returns is read by :func:`segbench.models.outputs.forward_heads`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segbench.config import SlidingWindow
from segbench.errors import UserError
from segbench.models.outputs import forward_heads


def forward_logits(model: nn.Module, images: Tensor, num_classes: int | None = None) -> Tensor:
    """The model's main logits as float at the input resolution (aux heads dropped)."""
    return forward_heads(model, images, num_classes)[0].float()


def class_log_probs(logits: Tensor) -> Tensor:
    """Per-class log-probabilities: log-softmax, or for one sigmoid channel ``(log σ(-z), log σ(z))``."""
    if logits.shape[1] == 1:
        return torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=1)
    return F.log_softmax(logits, dim=1)


def _window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window offsets covering ``[0, size)``; the last window is pulled back to end at the border."""
    count = max(size - crop + stride - 1, 0) // stride + 1
    return sorted({max(min(i * stride + crop, size) - crop, 0) for i in range(count)})


def check_sliding_window(crop: int, stride: int) -> None:
    """Windows ``stride`` apart must overlap or touch, or pixels between them get no prediction."""
    if stride > crop:
        raise UserError(
            f"eval.sliding_window.stride={stride} is larger than crop={crop}: the windows would leave gaps"
        )


def sliding_window_logits(
    model: nn.Module, images: Tensor, crop: int, stride: int, num_classes: int | None = None
) -> Tensor:
    """Logits of ``crop × crop`` windows ``stride`` apart, averaged where they overlap.

    An image smaller than ``crop`` along a side is one window along that side
    (no padding: segbench models accept any input size).
    """
    check_sliding_window(crop, stride)
    height, width = images.shape[-2:]
    windows = [
        (top, left, min(top + crop, height), min(left + crop, width))
        for top in _window_starts(height, crop, stride)
        for left in _window_starts(width, crop, stride)
    ]
    top, left, bottom, right = windows[0]
    first = forward_logits(model, images[..., top:bottom, left:right], num_classes)
    total = first.new_zeros((*first.shape[:2], height, width))
    count = first.new_zeros((1, 1, height, width))
    for i, (top, left, bottom, right) in enumerate(windows):
        logits = first if i == 0 else forward_logits(model, images[..., top:bottom, left:right], num_classes)
        total[..., top:bottom, left:right] += logits
        count[..., top:bottom, left:right] += 1
    return total / count


def _scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    # int(x + 0.5) as mmseg's rescale does, so sizes match the reference implementation.
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def _view_log_probs(
    model: nn.Module,
    images: Tensor,
    out_size: tuple[int, int],
    scale: float,
    mirrored: bool,
    sliding_window: SlidingWindow | None,
    num_classes: int | None,
) -> Tensor:
    """Class log-probabilities at ``out_size`` of one test-time view: the image at ``scale``, mirrored or not."""
    height, width = images.shape[-2:]
    size = _scaled_size(height, width, scale)
    view = (
        images
        if size == (height, width)
        else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    )
    if mirrored:
        view = view.flip(-1)
    if sliding_window is not None:
        logits = sliding_window_logits(model, view, sliding_window.crop, sliding_window.stride, num_classes)
    else:
        logits = forward_logits(model, view, num_classes)
    if mirrored:
        logits = logits.flip(-1)
    if logits.shape[-2:] != out_size:
        logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    return class_log_probs(logits)


def predict_log_probs(
    model: nn.Module,
    images: Tensor,
    out_size: Sequence[int],
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    sliding_window: SlidingWindow | None = None,
    num_classes: int | None = None,
) -> Tensor:
    """Log of the class probabilities averaged over every scale (and mirror) view, ``[N, C, *out_size]``.

    ``C`` is 2 for a one-channel (sigmoid) model. ``num_classes`` (the
    dataset's) is checked against the model's output. Call it under ``torch.inference_mode()`` with the model in eval mode.
    """
    if not scales:
        raise UserError("eval.scales: give at least one scale")
    size = (int(out_size[0]), int(out_size[1]))
    views = [(scale, mirrored) for scale in scales for mirrored in ((False, True) if flip else (False,))]
    log_sum = _view_log_probs(model, images, size, *views[0], sliding_window, num_classes)
    for scale, mirrored in views[1:]:
        log_sum = torch.logaddexp(
            log_sum, _view_log_probs(model, images, size, scale, mirrored, sliding_window, num_classes)
        )
    return log_sum - math.log(len(views)) if len(views) > 1 else log_sum
