"""Parameter counts, split by top-level module and with or without the aux head.

The aux head (the submodule named ``aux_classifier``) exists only for the
training loss, so papers report parameters without it while checkpoints carry
it. Both numbers are kept, and the by-module split shows where the rest goes
(backbone vs. head), so "params" in a table is never ambiguous.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

AUX_HEAD = "aux_classifier"


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of one model; shared parameters are counted once."""

    total: int
    trainable: int
    #: parameters only the aux head uses (0 when the model has none)
    aux: int
    total_without_aux: int
    trainable_without_aux: int
    #: top-level child (or root parameter) name → parameters, in registration order
    by_module: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def aux_head(model: nn.Module) -> nn.Module | None:
    """The model's aux head, or None (absent, or disabled by setting it to None)."""
    head = getattr(model, AUX_HEAD, None)
    return head if isinstance(head, nn.Module) else None


def count_params(model: nn.Module) -> ParamCount:
    """Count ``model``'s parameters: total, trainable, aux head, and per top-level module."""
    by_module: dict[str, int] = {}
    total = trainable = 0
    for name, param in model.named_parameters():  # named_parameters() skips shared duplicates
        top = name.split(".", 1)[0]
        by_module[top] = by_module.get(top, 0) + param.numel()
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    head = aux_head(model)
    # A parameter shared between the aux head and the rest of the model is not the aux head's own.
    elsewhere = {
        id(p) for n, p in model.named_parameters(remove_duplicate=False) if not n.startswith(f"{AUX_HEAD}.")
    }
    aux_params = [p for p in head.parameters() if id(p) not in elsewhere] if head is not None else []
    aux = sum(p.numel() for p in aux_params)
    aux_trainable = sum(p.numel() for p in aux_params if p.requires_grad)
    return ParamCount(
        total=total,
        trainable=trainable,
        aux=aux,
        total_without_aux=total - aux,
        trainable_without_aux=trainable - aux_trainable,
        by_module=by_module,
    )
