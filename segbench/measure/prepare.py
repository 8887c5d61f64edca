"""The model and input a measurement runs: on the device, in the precision and memory format asked.

A measurement must leave the user's model as it found it. Moving between
devices is lossless, so an fp32 model is moved in place (no second copy of
the weights) and moved back. Casting to fp16/bf16 is lossy and a
channels_last conversion changes every weight's strides, so those run on a
deep copy and the original is never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from segbench.measure.aux import preserved_modes
from segbench.measure.device import model_device
from segbench.measure.shapes import InputShape


@contextmanager
def prepared_model(
    model: nn.Module,
    device: torch.device,
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    private_copy: bool = False,
) -> Iterator[nn.Module]:
    """Yield ``model`` ready to run on ``device``; the caller sets its mode.

    ``private_copy`` forces a deep copy (a training step changes the weights
    and the BatchNorm statistics). The original's device and every module's
    ``training`` flag are restored on exit.
    """
    if private_copy or dtype != torch.float32 or channels_last:
        fmt = torch.channels_last if channels_last else torch.preserve_format
        yield copy.deepcopy(model).to(device=device, dtype=dtype, memory_format=fmt)
        return
    home = model_device(model)
    with preserved_modes(model):
        try:
            yield model.to(device)
        finally:
            model.to(home)


def example_input(
    shape: InputShape,
    device: torch.device,
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """A fixed random batch (seeded privately: the global RNG is not consumed)."""
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
