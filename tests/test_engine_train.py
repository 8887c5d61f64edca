"""Training loop: resume on the same schedule, checkpoints, divergence, AMP rules, losses, data order."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from segbench.config import TrainSettings
from segbench.engine.batches import ResumableBatchSampler
from segbench.engine.checkpoint import load_checkpoint
from segbench.engine.schedule import poly_lr
from segbench.engine.train import TrainingDiverged, TrainingInterrupted, train
from segbench.errors import UserError

IGNORE = 255
NUM_CLASSES = 3


class TinyNet(nn.Module):
    """Conv-BN-ReLU-dropout-conv with an optional aux head: every stateful part a real model has."""

    def __init__(self, aux: bool = False, seed: int = 0, dropout: float = 0.2):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(dropout)
        )
        self.head = nn.Conv2d(8, NUM_CLASSES, 1)
        self.aux = nn.Conv2d(8, NUM_CLASSES, 1) if aux else None
        self.forward_calls = 0

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.forward_calls += 1
        features = self.body(x)
        out = {"out": self.head(features)}
        if self.training and self.aux is not None:
            out["aux"] = self.aux(features)
        return out


class AugmentedSet(Dataset):
    """Random flips drawn from torch's global generator in ``__getitem__``, like a real transform."""

    def __init__(self, count: int = 6, size: int = 12, seed: int = 3):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(count, 3, size, size, generator=generator)
        self.masks = ((self.images[:, 0] > 0).long() + (self.images[:, 1] > 0.7).long()).clamp_max(2)
        self.masks[:, :2, :2] = IGNORE
        self.requested: list[int] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        self.requested.append(index)
        image, mask = self.images[index], self.masks[index]
        if torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image, mask


def _settings(**overrides: object) -> TrainSettings:
    base: dict[str, object] = {"iterations": 8, "batch_size": 2, "lr": 0.05, "aux_weight": 0.4}
    return TrainSettings.model_validate({**base, **overrides})


class _Crash(Exception):
    pass


@pytest.mark.parametrize(
    ("checkpoint_every", "checkpoint_seconds", "saved"),
    [
        (4, None, 4),  # the iteration interval
        # no iteration interval: only the wall-clock rule (here: after every step) can have saved the
        # state a lost worker's retry resumes from
        (0, 0.0, 5),
    ],
)
def test_resumed_run_ends_with_the_same_weights_and_curves_as_an_uninterrupted_one(
    tmp_path: Path, checkpoint_every: int, checkpoint_seconds: float | None, saved: int
) -> None:
    settings = _settings(checkpoint_every=checkpoint_every)
    straight_model = TinyNet(aux=True)
    straight = train(
        straight_model, AugmentedSet(), settings, seed=7, checkpoint_path=tmp_path / "a.pt", log_every=1
    )

    def crash_after_six(iteration: int, total: int, loss: float) -> None:
        if iteration == 6:
            raise _Crash

    crashed_path = tmp_path / "b.pt"
    with pytest.raises(_Crash):
        train(
            TinyNet(aux=True),
            AugmentedSet(),
            settings,
            seed=7,
            checkpoint_path=crashed_path,
            on_progress=crash_after_six,
            log_every=1,
            checkpoint_seconds=checkpoint_seconds,
        )
    assert torch.load(crashed_path, weights_only=True)["iteration"] == saved

    resumed_model = TinyNet(aux=True, seed=99)  # other initial weights: all must come from the checkpoint
    resumed = train(
        resumed_model, AugmentedSet(), settings, seed=7, checkpoint_path=crashed_path, log_every=1
    )
    assert resumed.resumed_from == saved and straight.resumed_from == 0
    assert resumed.lr_curve == straight.lr_curve
    assert resumed.loss_curve == straight.loss_curve
    for name, tensor in straight_model.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name
    assert resumed.iterations == straight.iterations == 8


def test_stop_request_saves_the_current_iteration_and_the_resume_matches_a_straight_run(
    tmp_path: Path,
) -> None:
    # No periodic checkpoint, and the stop lands inside a logging window (pending losses).
    settings = _settings(checkpoint_every=0)
    straight_model = TinyNet(aux=True)
    straight = train(straight_model, AugmentedSet(), settings, seed=7, log_every=3)

    steps = iter(range(1, 100))
    path = tmp_path / "stopped.pt"
    with pytest.raises(TrainingInterrupted) as stopped:
        train(
            TinyNet(aux=True),
            AugmentedSet(),
            settings,
            seed=7,
            checkpoint_path=path,
            log_every=3,
            should_stop=lambda: next(steps) >= 5,  # asked after every step: stop after step 5
        )
    assert stopped.value.iteration == 5
    assert torch.load(path, weights_only=True)["iteration"] == 5

    resumed_model = TinyNet(aux=True, seed=99)
    resumed = train(resumed_model, AugmentedSet(), settings, seed=7, checkpoint_path=path, log_every=3)
    assert resumed.resumed_from == 5
    assert resumed.loss_curve == straight.loss_curve and resumed.lr_curve == straight.lr_curve
    for name, tensor in straight_model.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name


def test_stop_request_without_a_checkpoint_path_saves_nothing() -> None:
    with pytest.raises(TrainingInterrupted) as stopped:
        train(TinyNet(), AugmentedSet(), _settings(aux_weight=None), should_stop=lambda: True)
    assert stopped.value.iteration is None


def test_same_seed_gives_the_same_weights_and_another_seed_other_weights() -> None:
    settings = _settings(iterations=4)
    first, second, other = TinyNet(), TinyNet(), TinyNet()
    train(first, AugmentedSet(), settings, seed=1)
    train(second, AugmentedSet(), settings, seed=1)
    train(other, AugmentedSet(), settings, seed=2)
    assert torch.equal(first.head.weight, second.head.weight)
    assert not torch.equal(first.head.weight, other.head.weight)


def test_complete_checkpoint_loads_weights_without_a_training_step(tmp_path: Path) -> None:
    path = tmp_path / "done.pt"
    settings = _settings(iterations=4)
    trained = TinyNet()
    first = train(trained, AugmentedSet(), settings, checkpoint_path=path)

    fresh, data = TinyNet(seed=5), AugmentedSet()
    again = train(
        fresh,
        data,
        settings.model_copy(update={"num_workers": 0, "checkpoint_every": 2}),
        checkpoint_path=path,
    )
    assert fresh.forward_calls == 0 and data.requested == []
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in trained.state_dict().items())
    assert again.resumed_from == 4
    assert (again.loss_curve, again.lr_curve, again.final_loss) == (
        first.loss_curve,
        first.lr_curve,
        first.final_loss,
    )
    assert again.seconds == pytest.approx(first.seconds)


def test_checkpoint_of_another_training_configuration_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    train(TinyNet(), AugmentedSet(), _settings(iterations=2), checkpoint_path=path)
    with pytest.raises(UserError, match=r"another training configuration \(lr: 0.05 there, 0.1 here\)"):
        train(TinyNet(), AugmentedSet(), _settings(iterations=2, lr=0.1), checkpoint_path=path)
    with pytest.raises(UserError, match="seed: 0 there, 1 here"):
        train(TinyNet(), AugmentedSet(), _settings(iterations=2), seed=1, checkpoint_path=path)


def test_unreadable_checkpoint_is_ignored_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "torn.pt"
    path.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        result = train(TinyNet(), AugmentedSet(), _settings(iterations=2), checkpoint_path=path)
    assert result.resumed_from == 0
    assert "ignoring unreadable checkpoint" in caplog.text
    state = load_checkpoint(path)
    assert state is not None and state["iteration"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["torn.pt"]  # no temporary file left behind


class NaNAfter(TinyNet):
    """Produces NaN logits from its ``bad_call``-th forward on."""

    def __init__(self, bad_call: int):
        super().__init__()
        self.bad_call = bad_call

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = super().forward(x)
        if self.forward_calls >= self.bad_call:
            out["out"] = out["out"] * math.nan
        return out


def test_nan_loss_raises_with_the_iteration_and_never_reaches_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "nan.pt"
    with pytest.raises(TrainingDiverged, match=r"loss is nan at iteration 3 of 8 \(lr ") as info:
        train(NaNAfter(bad_call=3), AugmentedSet(), _settings(checkpoint_every=1), checkpoint_path=path)
    assert info.value.iteration == 3
    state = load_checkpoint(path)
    assert state is not None and state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # Without checkpoints the loss is read every log_every iterations; the iteration is still exact.
    with pytest.raises(TrainingDiverged) as info:
        train(NaNAfter(bad_call=5), AugmentedSet(), _settings(), log_every=4)
    assert info.value.iteration == 5


def test_fp16_on_cpu_is_a_user_error_and_bf16_trains() -> None:
    with pytest.raises(UserError, match="'fp16' needs a CUDA device"):
        train(TinyNet(), AugmentedSet(), _settings(amp="fp16"))
    result = train(TinyNet(), AugmentedSet(), _settings(amp="bf16", iterations=2, channels_last=True))
    assert math.isfinite(result.final_loss)


def test_lr_curve_follows_poly_with_warmup_and_progress_is_reported() -> None:
    settings = _settings(iterations=10, warmup_iters=3, lr=0.02)
    seen: list[tuple[int, int, float]] = []
    result = train(
        TinyNet(),
        AugmentedSet(),
        settings,
        log_every=2,
        on_progress=lambda i, n, loss: seen.append((i, n, loss)),
    )
    assert [i for i, _ in result.lr_curve] == [2, 4, 6, 8, 10]
    for iteration, lr in result.lr_curve:
        assert lr == pytest.approx(poly_lr(0.02, iteration - 1, 10, 0.9, 3))
    assert seen == [(i, 10, loss) for i, loss in result.loss_curve]
    assert result.final_loss == result.loss_curve[-1][1]
    assert result.images_per_s > 0 and result.seconds > 0


class FixedBatch(Dataset):
    def __init__(self, masks: Tensor):
        self.images = torch.randn(
            len(masks), 3, *masks.shape[-2:], generator=torch.Generator().manual_seed(4)
        )
        self.masks = masks

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.masks[index]


def _first_loss(model: TinyNet, data: FixedBatch, aux_weight: float | None) -> float:
    # One batch holding the whole set: the loss does not depend on the shuffled order.
    settings = _settings(iterations=1, batch_size=len(data), aux_weight=aux_weight, lr=1e-9)
    return train(model, data, settings, log_every=1).loss_curve[0][1]


def test_loss_is_cross_entropy_plus_weighted_aux_over_labelled_pixels() -> None:
    masks = torch.randint(0, NUM_CLASSES, (4, 6, 6), generator=torch.Generator().manual_seed(5))
    masks[:, 0] = IGNORE
    data = FixedBatch(masks)
    reference = TinyNet(aux=True, dropout=0.0).train()
    with torch.no_grad():
        outputs = reference(data.images)
    expected_main = F.cross_entropy(outputs["out"], masks, ignore_index=IGNORE)
    expected_aux = F.cross_entropy(outputs["aux"], masks, ignore_index=IGNORE)
    with_aux = _first_loss(TinyNet(aux=True, dropout=0.0), data, aux_weight=0.4)
    without_aux = _first_loss(TinyNet(aux=True, dropout=0.0), data, aux_weight=None)
    assert without_aux == pytest.approx(float(expected_main), rel=1e-5)
    assert with_aux == pytest.approx(float(expected_main + 0.4 * expected_aux), rel=1e-5)


def test_all_ignored_batch_is_a_zero_loss_not_a_divergence() -> None:
    data = FixedBatch(torch.full((2, 6, 6), IGNORE))
    assert _first_loss(TinyNet(), data, aux_weight=None) == 0.0


def test_each_epoch_visits_a_permutation_and_drops_the_remainder() -> None:
    data = AugmentedSet(count=7)
    train(TinyNet(), data, _settings(iterations=6, batch_size=2))  # 3 batches per epoch, 2 epochs
    first, second = data.requested[:6], data.requested[6:]
    assert len(set(first)) == 6 and len(set(second)) == 6
    assert first != second


def test_batches_of_a_resumed_stream_are_the_tail_of_the_full_stream() -> None:
    full = list(ResumableBatchSampler(num_items=7, batch_size=3, seed=4, start=0, total=9))
    tail = list(ResumableBatchSampler(num_items=7, batch_size=3, seed=4, start=5, total=9))
    assert tail == full[5:] and len(full) == 9
    assert all(len(batch) == 3 for batch in full)
    assert list(ResumableBatchSampler(7, 3, seed=5, start=0, total=9)) != full


def test_dataset_problems_are_user_errors() -> None:
    with pytest.raises(UserError, match="has 6 samples, fewer than train.batch_size=8"):
        train(TinyNet(), AugmentedSet(), _settings(batch_size=8))

    class MixedSizes(AugmentedSet):
        def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
            image, mask = super().__getitem__(index)
            return (image[:, :8, :8], mask[:8, :8]) if index % 2 else (image, mask)

    with pytest.raises(UserError, match="differ in size.*set train.crop_size"):
        train(TinyNet(), MixedSizes(), _settings(batch_size=6))

    class TensorOnly(TinyNet):
        def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
            return super().forward(x)["out"]

    assert math.isfinite(train(TensorOnly(), AugmentedSet(), _settings(iterations=2)).final_loss)
    with pytest.raises(UserError, match=r"TensorOnly .* returns \d+ output channels but the dataset has 9"):
        train(TensorOnly(), AugmentedSet(), _settings(iterations=2), num_classes=9)


def test_worker_processes_and_deterministic_flags_are_restored() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    result = train(
        TinyNet(), AugmentedSet(), _settings(iterations=3, num_workers=1, deterministic=not before)
    )
    assert math.isfinite(result.final_loss)
    assert torch.are_deterministic_algorithms_enabled() == before
