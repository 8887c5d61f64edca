"""Checkpoint files: atomic replacement, completeness, fingerprints; generator state round trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from segbench.config import TrainSettings
from segbench.engine import checkpoint as ckpt
from segbench.engine.reproducibility import capture_rng_state, restore_rng_state, seed_everything
from segbench.errors import UserError


def _state(iteration: int, settings: TrainSettings | None = None) -> dict[str, object]:
    return {
        "format_version": ckpt.FORMAT_VERSION,
        "fingerprint": ckpt.training_fingerprint(settings or TrainSettings(), seed=0),
        "iteration": iteration,
        "model": {"w": torch.full((2,), float(iteration))},
        "optimizer": {},
        "scaler": {},
        "rng": capture_rng_state(),
        "progress": {"loss_curve": [], "lr_curve": [], "pending": [], "seconds": 0.0},
    }


def test_a_failed_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.pt"
    ckpt.save_checkpoint(path, _state(4))

    def torn_save(obj: object, fh: object) -> None:
        fh.write(b"half a checkpoint")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, _state(8))
    loaded = ckpt.load_checkpoint(path)
    assert loaded is not None and loaded["iteration"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]


def test_incomplete_or_missing_checkpoints_load_as_none(tmp_path: Path) -> None:
    assert ckpt.load_checkpoint(tmp_path / "absent.pt") is None
    partial = {k: v for k, v in _state(2).items() if k != "optimizer"}
    torch.save(partial, tmp_path / "partial.pt")
    assert ckpt.load_checkpoint(tmp_path / "partial.pt") is None
    with pytest.raises(ValueError, match="lacks \\['optimizer'\\]"):
        ckpt.save_checkpoint(tmp_path / "x.pt", partial)
    future = {**_state(2), "format_version": ckpt.FORMAT_VERSION + 1}
    torch.save(future, tmp_path / "future.pt")
    with pytest.raises(UserError, match="checkpoint format 2 is not the supported 1"):
        ckpt.load_checkpoint(tmp_path / "future.pt")


def test_fingerprint_ignores_bookkeeping_settings_only() -> None:
    base = TrainSettings()
    same = ckpt.training_fingerprint(base.model_copy(update={"checkpoint_every": 50, "num_workers": 4}), 0)
    assert ckpt.training_fingerprint(base, 0) == same
    state = {"fingerprint": ckpt.training_fingerprint(base, 0)}
    ckpt.check_fingerprint(state, same, Path("x.pt"))
    other = ckpt.training_fingerprint(base.model_copy(update={"iterations": 400, "aux_weight": None}), 0)
    with pytest.raises(UserError, match=r"aux_weight: 0.4 there, None here; iterations: 200 there, 400 here"):
        ckpt.check_fingerprint(state, other, Path("x.pt"))


def test_generator_state_survives_a_weights_only_round_trip(tmp_path: Path) -> None:
    seed_everything(11)
    torch.randn(3), np.random.rand(3), random.random()
    torch.save(capture_rng_state(), tmp_path / "rng.pt")
    expected = (torch.randn(4), np.random.rand(4), [random.random() for _ in range(4)])
    seed_everything(12)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.randn(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]
