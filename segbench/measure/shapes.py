"""Validation of ``input_shape`` and ``device`` arguments, torch-free.

A transposed input shape is the most common silent error in published
complexity numbers: ``(1, 520, 520, 3)`` traces happily through a model whose
first conv has ``in_channels=520``... or fails deep inside a tracer with a
message about weights. segbench checks the tuple up front and says what it
expected, so the mistake is reported in the user's own terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from segbench.errors import UserError, did_you_mean

InputShape = tuple[int, int, int, int]

#: Channel counts of the images segmentation models take (gray, RGB, RGB-D / RGBA).
#: A last dimension in this set next to a large second dimension means (N, H, W, C).
_IMAGE_CHANNELS = (1, 3, 4)

DEVICE_KINDS = ("cpu", "cuda")


def validate_input_shape(input_shape: Sequence[Any], *, where: str = "input_shape") -> InputShape:
    """Return ``input_shape`` as an ``(N, C, H, W)`` tuple of ints, or raise a :class:`UserError`.

    The error names what looks wrong (not 4-D, not positive integers, channels
    last) and proposes the shape that was probably meant.
    """
    try:
        dims = tuple(input_shape)
    except TypeError:
        raise UserError(f"{where}: expected a tuple (N, C, H, W), got {input_shape!r}") from None
    if len(dims) != 4:
        hint = f"; did you mean (1, {', '.join(map(str, dims))})?" if len(dims) == 3 else ""
        raise UserError(f"{where}: expected 4 dimensions (N, C, H, W), got {len(dims)}: {dims}{hint}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise UserError(f"{where}: every dimension of (N, C, H, W) must be a positive integer, got {dims}")
    n, c, h, w = dims
    if w in _IMAGE_CHANNELS and c not in _IMAGE_CHANNELS and c > w:
        raise UserError(
            f"{where}: {dims} looks like (N, H, W, C) — channels last; segbench takes (N, C, H, W): "
            f"did you mean {(n, w, c, h)}?"
        )
    return (n, c, h, w)


def validate_device(device: str) -> str:
    """Check that ``device`` names a kind segbench measures on: ``cpu``, ``cuda`` or ``cuda:N``.

    Whether CUDA is actually present is checked by :func:`segbench.measure.device.resolve_device`,
    which needs torch.
    """
    if not isinstance(device, str):
        raise UserError(f"device: expected a string such as 'cpu' or 'cuda:0', got {device!r}")
    kind, _, index = device.partition(":")
    if kind not in DEVICE_KINDS:
        # difflib would offer 'cpu' for 'gpu' (one letter apart); the user meant the other one.
        hint = " (did you mean 'cuda'?)" if kind.lower() == "gpu" else did_you_mean(kind, DEVICE_KINDS)
        raise UserError(
            f"device: '{device}' is not supported; segbench measures on {', '.join(DEVICE_KINDS)}{hint}"
        )
    if index and (kind != "cuda" or not index.isdigit()):
        raise UserError(f"device: '{device}' — only CUDA devices take an index, written 'cuda:N'")
    return device
