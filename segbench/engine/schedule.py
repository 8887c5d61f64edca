"""The learning-rate schedule the segmentation papers train with.

DeepLab, PSPNet and CGNet all use the "poly" policy, ``lr * (1 - iter / max_iter) ** power``
with ``power = 0.9``. A linear warm-up over the first iterations is optional
(mmseg's ``warmup="linear"``); it multiplies the poly value, so the curve joins the
plain poly curve exactly when warm-up ends.

The schedule is a pure function of the iteration index instead of a stateful
``torch.optim.lr_scheduler`` object: a resumed run only needs the iteration
number to be on exactly the same schedule, and this module stays torch-free.
"""

from __future__ import annotations


def poly_lr(
    base_lr: float, iteration: int, max_iter: int, power: float = 0.9, warmup_iters: int = 0
) -> float:
    """Learning rate for the 0-based ``iteration`` of ``max_iter``.

    ``iteration`` counts completed optimizer steps, so the first step uses
    ``base_lr`` (without warm-up) and the last one a small positive rate.
    During warm-up the rate ramps linearly: step ``i < warmup_iters`` is scaled by
    ``(i + 1) / warmup_iters``.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not 0 <= iteration < max_iter:
        raise ValueError(f"iteration {iteration} is outside [0, {max_iter})")
    lr = base_lr * (1.0 - iteration / max_iter) ** power
    if iteration < warmup_iters:
        lr *= (iteration + 1) / warmup_iters
    return lr
