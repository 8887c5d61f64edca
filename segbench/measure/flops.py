"""FLOP counting with fvcore: the conv/matmul multiply-adds, fvcore's total, and what it could not count.

Conventions (the same as torchvision's published GFLOPS and the papers'
"Multiply-Adds"): one fused multiply-add is one FLOP, and :attr:`FlopCount.macs`
counts convolutions (including transposed ones) and linear / matmul / einsum
operators only. :attr:`FlopCount.fvcore_total` adds what fvcore also counts
(norms, adaptive pooling, upsampling). Operators fvcore has no formula for are
never dropped silently: they are listed in :attr:`FlopCount.uncounted` with how
often they ran. fvcore's deliberately free operators (shape ops, ``relu``,
``cat``, …) are not "uncounted": they cost zero by the convention.

The aux head is counted only when asked (``include_aux``), for both kinds of
models, by tracing the network in the mode where it runs — or with it removed
(see :mod:`segbench.measure.aux`); the model comes back unchanged.

The trace runs through the model-output adapter
(:func:`segbench.models.outputs.model_heads`): fvcore's jit trace needs tensor
outputs, so the traced module returns the adapted main logits (and, with
``include_aux``, the aux heads). What a model returns but no head uses (smp's
classification labels, an aux head of a third-party model without
``aux_classifier`` while aux is not counted) is dead code in that trace and is
not counted; logits resized to the input add their upsampling to
``fvcore_total`` as segbench's own models' in-forward upsampling does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from segbench.errors import UserError
from segbench.measure.aux import aux_training_mode, preserved_modes, without_aux_head
from segbench.measure.device import model_device, preserved_rng, resolve_device
from segbench.measure.params import AUX_HEAD, aux_head
from segbench.measure.prepare import example_input
from segbench.measure.shapes import InputShape, validate_input_shape
from segbench.models.outputs import forward_heads

#: fvcore calls torch.jit (script at import, trace per count), which newer torch marks deprecated.
_JIT_DEPRECATION = r".*torch\.jit.*deprecated"

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
    from fvcore.nn import FlopCountAnalysis

#: fvcore operator names (after its ``aten::`` stripping) that are multiply-adds of
#: convolutions and matrix products: the papers' and torchvision's convention.
MAC_OPERATORS = frozenset({"conv", "linear", "matmul", "mm", "addmm", "bmm", "einsum"})

CONVENTION = "fvcore: one fused multiply-add = one FLOP; macs = conv + linear/matmul/einsum"


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass at ``input_shape`` (N, C, H, W)."""

    #: conv + matmul multiply-adds (torchvision's ``_ops`` convention)
    macs: int
    #: everything fvcore counts: macs + norms, adaptive pooling, upsampling
    fvcore_total: int
    #: macs per module: every top-level child (but an aux head left out), and deeper modules
    #: (names with fewer than ``module_depth`` dots) that have any FLOPs
    by_module: dict[str, int]
    #: fvcore's total per module, same keys as ``by_module``
    total_by_module: dict[str, int]
    #: fvcore's total per operator (``conv``, ``batch_norm``, ``upsample_bilinear2d``, …)
    by_operator: dict[str, int]
    #: operators fvcore has no formula for → how many times they ran
    uncounted: dict[str, int]
    input_shape: tuple[int, int, int, int]
    include_aux: bool
    #: whether an aux head ran in the counted pass (False when the model has none)
    aux_counted: bool
    convention: str = CONVENTION

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out


@dataclass(frozen=True)
class _Trace:
    """The plain-data result of one fvcore trace (fvcore's object traces lazily; this does not)."""

    by_module_and_operator: dict[str, dict[str, int]]
    unsupported: dict[str, int]
    uncalled: frozenset[str]


def count_flops(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    include_aux: bool = False,
    device: str = "cpu",
    module_depth: int = 2,
    num_classes: int | None = None,
) -> FlopCount:
    """Count the FLOPs of ``model`` on one input of ``input_shape`` = (N, C, H, W).

    ``include_aux`` counts the aux head (``aux_classifier``) whether the model
    runs it in eval (torchvision) or only in training (segbench); otherwise the
    aux head is excluded for both. ``device`` is where the trace runs; the
    model must already be there. Global RNG state, the model's modes, buffers
    and attributes are unchanged afterwards. ``num_classes`` (the dataset's)
    is checked against the model's output channels.
    """
    shape = validate_input_shape(input_shape)
    dev = resolve_device(device)
    where = model_device(model)
    if where != dev:
        raise UserError(
            f"count_flops: the model is on '{where}' but device='{device}'; "
            f"pass device='{where}' or move the model with model.to('{device}')"
        )
    if module_depth < 1:
        raise UserError(f"count_flops: module_depth must be ≥ 1, got {module_depth}")
    head = aux_head(model)
    with preserved_modes(model), preserved_rng(dev), torch.no_grad():
        model.eval()
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        example = example_input(shape, dev, dtype=dtype)
        trace = _trace(model, example, include_aux, num_classes)
        aux_ran = head is not None and AUX_HEAD not in trace.uncalled
        if head is not None and include_aux and not aux_ran:
            with aux_training_mode(model):
                trace = _trace(model, example, include_aux, num_classes)
            aux_ran = AUX_HEAD not in trace.uncalled
            if not aux_ran:
                raise UserError(
                    f"count_flops(include_aux=True): {type(model).__name__}.{AUX_HEAD} ran neither "
                    "in eval nor in training mode, so its FLOPs cannot be counted"
                )
        elif head is not None and not include_aux and aux_ran:
            with without_aux_head(model):
                trace = _trace(model, example, include_aux, num_classes)
            aux_ran = False
    return _flop_count(trace, shape, include_aux=include_aux, aux_counted=aux_ran, depth=module_depth)


def count_inference_flops(
    model: nn.Module,
    input_shape: Sequence[int],
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    *,
    include_aux: bool = False,
    device: str = "cpu",
    num_classes: int | None = None,
) -> int:
    """Multiply-adds (``macs``) of a whole multi-scale (+ flip) evaluation of one ``input_shape`` batch.

    The sum over ``scales`` of the network at the input resized as the
    evaluation resizes it, twice for ``flip`` (the mirrored view is another
    full forward pass) — how DeepLab v3+ reports the cost of its test-time
    augmentation. Resizing, flipping and averaging are not multiply-adds.
    """
    n, c, h, w = validate_input_shape(input_shape)
    scales = tuple(scales)
    if not scales or any(not isinstance(s, (int, float)) or s <= 0 for s in scales):
        raise UserError(f"count_inference_flops: scales must be positive numbers, got {scales}")
    per_size: dict[tuple[int, int], int] = {}
    total = 0
    for scale in scales:
        size = scaled_size(h, w, scale)
        if size not in per_size:
            per_size[size] = count_flops(
                model, (n, c, *size), include_aux=include_aux, device=device, num_classes=num_classes
            ).macs
        total += per_size[size] * (2 if flip else 1)
    return total


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The image size at ``scale``, rounded as :mod:`segbench.engine.inference` (and mmseg) round it."""
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


#: dropout variants fvcore does not list as free; identities in eval mode
_EVAL_DROPOUT_OPS = ("aten::feature_dropout", "aten::alpha_dropout", "aten::feature_alpha_dropout")


class _Adapted(nn.Module):
    """``model`` as a tracer sees it: a tuple of tensors (main logits, with ``include_aux`` the aux heads).

    The model is this module's only child, ``model``; :func:`_trace` strips that
    prefix again, so module names are the model's own.
    """

    def __init__(self, model: nn.Module, include_aux: bool, num_classes: int | None) -> None:
        super().__init__()
        self.model = model
        self.include_aux = include_aux
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        heads = forward_heads(self.model, images, self.num_classes)
        return heads if self.include_aux else heads[:1]


def _model_name(name: str) -> str | None:
    """A module name under :class:`_Adapted` as the model's own; "" stays the whole, its child "model" is None."""
    return None if name == "model" else name.removeprefix("model.")


def _trace(model: nn.Module, example: torch.Tensor, include_aux: bool, num_classes: int | None) -> _Trace:
    analysis = FlopCountAnalysis(_Adapted(model, include_aux, num_classes), (example,))
    # Dropout layers are traced in eval mode (see aux.py), where they are the identity: free,
    # like fvcore's own ignored ``aten::dropout``, not "uncounted".
    analysis.set_op_handle(**dict.fromkeys(_EVAL_DROPOUT_OPS))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
        per_module = analysis.by_module_and_operator()
    by_module_and_operator: dict[str, dict[str, int]] = {}
    for name, ops in per_module.items():
        own = _model_name(name)
        if own is not None:
            by_module_and_operator[own] = {op: int(round(count)) for op, count in ops.items()}
    return _Trace(
        by_module_and_operator=by_module_and_operator,
        unsupported=dict(analysis.unsupported_ops()),
        uncalled=frozenset(n for n in map(_model_name, analysis.uncalled_modules()) if n),
    )


def _flop_count(
    trace: _Trace, shape: InputShape, *, include_aux: bool, aux_counted: bool, depth: int
) -> FlopCount:
    by_module: dict[str, int] = {}
    total_by_module: dict[str, int] = {}
    for name, ops in trace.by_module_and_operator.items():
        if not name or name.count(".") >= depth:
            continue
        if not aux_counted and (name == AUX_HEAD or name.startswith(f"{AUX_HEAD}.")):
            continue  # an aux head that did not run is not part of this count, not a zero in it
        macs, total = _macs(ops), sum(ops.values())
        if "." not in name or total:
            by_module[name], total_by_module[name] = macs, total
    whole = trace.by_module_and_operator[""]
    return FlopCount(
        macs=_macs(whole),
        fvcore_total=sum(whole.values()),
        by_module=by_module,
        total_by_module=total_by_module,
        by_operator=dict(sorted(whole.items(), key=lambda kv: -kv[1])),
        uncounted=dict(sorted(trace.unsupported.items())),
        input_shape=shape,
        include_aux=include_aux,
        aux_counted=aux_counted,
    )


def _macs(ops: dict[str, int]) -> int:
    return sum(count for op, count in ops.items() if op in MAC_OPERATORS)
