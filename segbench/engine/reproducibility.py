"""Seeds, deterministic mode and random-number-generator state.

A job is reproducible when every source of randomness is seeded (Python, NumPy,
torch on CPU and CUDA, DataLoader workers) and, in deterministic mode, torch picks
deterministic kernels. A resumed job is *the same* job when the generators are
restored to where the checkpoint left them, so the state is captured in a form
``torch.load(weights_only=True)`` accepts (tensors, ints, tuples; no NumPy objects).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

_UINT64 = (1 << 64) - 1


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Call it before building the model too."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFF_FFFF)  # NumPy's legacy seed is 32-bit
    torch.manual_seed(seed & _UINT64)


def derived_seed(*parts: int) -> int:
    """A well-mixed 64-bit seed from integers (e.g. job seed and epoch), stable across runs."""
    state = np.random.SeedSequence([p & _UINT64 for p in parts]).generate_state(1, np.uint64)
    return int(state[0])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: torch seeds each worker; give NumPy and Python the same seed.

    Without this every worker's NumPy generator starts from the parent's state, so
    workers would draw identical "random" augmentations.
    """
    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed & 0xFFFF_FFFF)


@contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Deterministic kernels (``enabled``) or the fastest ones (cuDNN autotuning); restored on exit.

    ``warn_only=True``: an op without a deterministic implementation warns instead
    of failing the job, because refusing to train is worse than a documented
    tolerance (PyTorch's upsampling backward on CUDA is such an op).
    """
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if enabled:
        # cuBLAS reads this when it creates its first handle; harmless if that already happened.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic = previous[2]
        torch.backends.cudnn.benchmark = previous[3]


def capture_rng_state() -> dict[str, Any]:
    """Every global generator's state, as tensors and plain Python values."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`; CUDA states are restored only where CUDA is in use."""
    random.setstate(_as_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].cpu().numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples; a serialised state may come back with lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value
