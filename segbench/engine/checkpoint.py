"""Training checkpoints: written atomically, loaded only when complete, keyed by the training config.

A checkpoint holds everything a crashed job needs to continue as if it had never
stopped: model, optimizer (momentum buffers), AMP grad scaler, the number of
completed iterations, every random generator's state, the loss / LR curves so far
and the training seconds spent. It records the training *fingerprint* (the
:class:`~segbench.config.TrainSettings` that shape the result, plus the seed) and
refuses to resume under a different one, so a checkpoint path reused by mistake
is an error instead of a silently mixed run.

Atomicity: the state is written to a temporary file in the same directory, flushed
to disk and renamed over the target (``os.replace`` is atomic on POSIX and
Windows). A reader therefore sees either the previous complete checkpoint or the
new complete one, never a torn file, even if the job is killed mid-write.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from segbench.config import TrainSettings
from segbench.errors import UserError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REQUIRED_KEYS = frozenset(
    {"format_version", "fingerprint", "iteration", "model", "optimizer", "scaler", "rng", "progress"}
)
# Settings that change how a run is carried out but not what it computes: a job
# may resume with other values (e.g. more data-loading workers after a crash).
RESUME_NEUTRAL_FIELDS = frozenset({"checkpoint_every", "num_workers"})


def training_fingerprint(settings: TrainSettings, seed: int) -> dict[str, Any]:
    """The JSON-able identity of a training run: the result-shaping settings and the seed."""
    fields = settings.model_dump(mode="json", exclude=set(RESUME_NEUTRAL_FIELDS))
    return {**fields, "seed": seed}


#: temporary files a checkpoint write goes through (left behind only by a killed process)
TMP_GLOB = ".*.tmp"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename).

    A full disk is named as such, with the size the checkpoint needs: torch only
    says "enforce fail at inline_container.cc", without a word of disk space.
    """
    missing = REQUIRED_KEYS - state.keys()
    if missing:
        raise ValueError(f"checkpoint state lacks {sorted(missing)}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)  # first: the space it took is free again, and the message says so
        full = _no_space(exc, path, state)
        if full is None:
            raise
        raise full from exc
    finally:
        tmp.unlink(missing_ok=True)


def _tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in a nested state: about what its file needs on disk."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _no_space(exc: BaseException, path: Path, state: dict[str, Any]) -> OSError | None:
    """An ``ENOSPC`` error naming the checkpoint and its size if ``exc`` came from a full disk, else None.

    torch's writer drops the errno, so a failure is taken for a full disk when the
    disk has less space left than the checkpoint needs.
    """
    needed = _tensor_bytes(state)
    try:
        free: int | None = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if not (getattr(exc, "errno", None) == errno.ENOSPC or (free is not None and free < needed)):
        return None
    left = f", {free / 2**20:.1f} MB free" if free is not None else ""
    return OSError(
        errno.ENOSPC,
        f"no space left on device writing checkpoint {path} (needs ~{needed / 2**20:.1f} MB{left})",
    )


def check_workdir(workdir: Path) -> None:
    """Fail before a run is recorded if training could not write checkpoints under ``workdir``.

    Only suites that train call this: a suite that never trains needs no workdir at all.
    """
    root = workdir / "checkpoints"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root, prefix=".segbench-probe."):
            pass
    except OSError as exc:
        raise UserError(
            f"--workdir {workdir}: training cannot write checkpoints under it ({exc.strerror or exc}); "
            "pass --workdir a writable folder"
        ) from None


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists and is complete, else ``None``.

    An unreadable or incomplete file (say, copied half-way by hand) is logged and
    treated as absent: training starts afresh and overwrites it at its first
    checkpoint, which is safer than crashing a job on a file it can regenerate.
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable checkpoint %s (%s); training from scratch", path, exc)
        return None
    if not isinstance(state, dict) or not state.keys() >= REQUIRED_KEYS:
        log.warning("ignoring incomplete checkpoint %s; training from scratch", path)
        return None
    if state["format_version"] != FORMAT_VERSION:
        raise UserError(
            f"{path}: checkpoint format {state['format_version']} is not the supported {FORMAT_VERSION}; "
            "delete it to retrain"
        )
    return state


def check_fingerprint(state: dict[str, Any], fingerprint: dict[str, Any], path: Path) -> None:
    """Raise a UserError naming each setting on which ``state`` differs from this run."""
    stored = state["fingerprint"]
    if stored == fingerprint:
        return
    keys = sorted(stored.keys() | fingerprint.keys())
    diffs = [
        f"{k}: {stored.get(k)!r} there, {fingerprint.get(k)!r} here"
        for k in keys
        if stored.get(k) != fingerprint.get(k)
    ]
    raise UserError(
        f"{path}: checkpoint belongs to another training configuration ({'; '.join(diffs)}); "
        "delete it or train to another checkpoint path"
    )
