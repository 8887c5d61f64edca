"""Making the aux head run, or not run, for one measurement — and undoing it exactly.

Two kinds of models disagree on when the aux head runs: segbench's own models
compute ``"aux"`` only while ``model.training``, torchvision's whenever
``aux_classifier is not None`` (also in eval). Counting FLOPs "with" or
"without" the aux head must be exact for both, so these context managers switch
the one thing that decides it and restore the model afterwards: every
module's ``training`` flag, the ``aux_classifier`` attribute and every buffer
(BatchNorm running statistics) are as they were when the block exits, even if
it raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.instancenorm import _InstanceNorm

from segbench.measure.params import AUX_HEAD

#: Layers whose training-mode behaviour changes the numbers or the state (batch statistics,
#: running-stat updates, random masks) rather than which branches run; kept in eval mode.
_EVAL_LAYERS = (_BatchNorm, _InstanceNorm, _DropoutNd)


@contextmanager
def preserved_modes(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's ``training`` flag on exit (a model may mix train and eval parts)."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


@contextmanager
def aux_training_mode(model: nn.Module) -> Iterator[None]:
    """``model.train()`` so a training-only aux head runs, with norms and dropout still in eval.

    Norm layers in eval use their running statistics, so the traced operators
    are the inference ones and nothing is updated; every buffer is still
    snapshotted and written back, for layers that update state in training
    mode that this module does not know about.
    """
    saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    with preserved_modes(model):
        model.train()
        for module in model.modules():
            if isinstance(module, _EVAL_LAYERS):
                module.eval()
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, value in saved:
                    buffer.copy_(value)


@contextmanager
def without_aux_head(model: nn.Module) -> Iterator[None]:
    """Set ``model.aux_classifier = None`` (torchvision's way of switching the aux head off)."""
    head = getattr(model, AUX_HEAD)
    setattr(model, AUX_HEAD, None)
    try:
        yield
    finally:
        setattr(model, AUX_HEAD, head)
