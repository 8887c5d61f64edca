"""Loading local weights into any segbench model (nothing is ever downloaded).

A file holds a state dict, read with ``torch.load(path, weights_only=True)``:

* **the whole model** (its keys name the model's own top-level modules):
  loaded strictly, every tensor present with the right shape, nothing extra —
  except an aux head's tensors when the model was built without one, which are
  dropped as torchvision does with its published weights;
* **the backbone only**, for models with a ``backbone`` (e.g. an ImageNet
  checkpoint with torchvision's names): every backbone tensor must be present
  with the right shape; tensors the backbone does not have (a classifier's
  ``fc.*`` / ``classifier.*``) are ignored.

A file of another configuration never half-loads: every mismatch is a UserError.

A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and DataParallel's
``module.`` prefix are unwrapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from segbench.errors import UserError

_WRAPPERS = ("state_dict", "model")


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load ``path`` into ``model`` (or its ``backbone``); returns ``"model"`` or ``"backbone"``."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"weights file '{file}' does not exist (weights are local files; nothing downloads)")
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike mean "not a usable state dict"
        raise UserError(f"weights file '{file}' is not a readable state dict: {exc}") from None
    state = _unwrap(loaded, file)
    children = {name for name, _ in model.named_children()}
    whole = any(key.split(".", 1)[0] in children for key in state)
    if whole or "backbone" not in children:
        if getattr(model, "aux_classifier", None) is None:
            state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
        _check(model, state, file, strict=True)
        model.load_state_dict(state, strict=True)
        return "model"
    backbone = model.get_submodule("backbone")
    _check(backbone, state, file, strict=False)
    backbone.load_state_dict(state, strict=False)
    return "backbone"


def _unwrap(loaded: Any, file: Path) -> dict[str, Tensor]:
    # Training checkpoints keep the weights next to other things (epoch, optimizer):
    # the official CGNet files are {"epoch": ..., "model": {...}}.
    if isinstance(loaded, Mapping):
        for key in _WRAPPERS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise UserError(f"weights file '{file}' holds no state dict (a mapping of names to tensors)")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def _check(target: nn.Module, state: Mapping[str, Tensor], file: Path, strict: bool) -> None:
    what = "model" if strict else "backbone"
    expected = target.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs {what} {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    unexpected = [k for k in state if k not in expected] if strict else []
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors ({_few(missing)})")
    if wrong:
        problems.append(f"{len(wrong)} shapes differ ({_few(wrong)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors ({_few(unexpected)})")
    if problems:
        hint = (
            "a whole-model file must match the model's options (backbone, width, num_classes, heads)"
            if strict
            else "a backbone file needs the backbone's parameter names, e.g. torchvision's"
        )
        raise UserError(f"weights file '{file}' does not fit this {what}: {'; '.join(problems)}; {hint}")


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")
