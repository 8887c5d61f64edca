"""The training loop the segmentation papers describe, resumable and cheap per iteration.

SGD with momentum and weight decay, the "poly" learning rate with optional
warm-up (:mod:`~segbench.engine.schedule`), pixel-wise cross-entropy with
``ignore_index`` plus ``aux_weight`` × the auxiliary head's loss
(:mod:`~segbench.engine.loss`) on the heads :func:`~segbench.models.outputs.forward_heads`
reads from whatever the model returns, optional AMP and channels_last on CUDA.

The loop never waits for the device per iteration: losses stay on the device
and are read every ``log_every`` iterations (and before each checkpoint), which
is also when a NaN / inf loss is detected and reported with the exact iteration
it happened at.

Resuming: the batches are a pure function of ``(seed, iteration)``
(:mod:`~segbench.engine.batches`) and the learning rate a pure function of the
iteration, so a checkpoint at iteration ``k`` plus the restored generator states
continue the very same run. With ``num_workers=0`` a resumed run is
bit-identical to an uninterrupted one (CPU, deterministic mode); with workers
the batches hold the same images, but random augmentations drawn inside the
workers are re-seeded at the resume point.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from segbench.config import TrainSettings
from segbench.engine.batches import training_loader
from segbench.engine.checkpoint import (
    FORMAT_VERSION,
    check_fingerprint,
    load_checkpoint,
    save_checkpoint,
    training_fingerprint,
)
from segbench.engine.loss import segmentation_loss
from segbench.engine.reproducibility import (
    capture_rng_state,
    deterministic_mode,
    restore_rng_state,
    seed_everything,
)
from segbench.engine.schedule import poly_lr
from segbench.errors import UserError
from segbench.models.outputs import forward_heads

ProgressCallback = Callable[[int, int, float], None]


class TrainingInterrupted(KeyboardInterrupt):
    """Training was asked to stop (the run is being interrupted) and saved its checkpoint first.

    A :class:`KeyboardInterrupt`, so that whatever turns a job's errors into a
    failed result lets it through: the job was cut off, it did not fail.
    ``iteration`` is where the checkpoint stands (``None``: nothing was saved,
    the training had no checkpoint path).
    """

    def __init__(self, iteration: int | None, total: int):
        self.iteration = iteration
        where = f"checkpoint saved at iteration {iteration}" if iteration is not None else "no checkpoint"
        super().__init__(f"training stopped at iteration {iteration} of {total} ({where})")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the job stops instead of training on garbage."""

    def __init__(self, iteration: int, total: int, loss: float, lr: float):
        self.iteration = iteration
        self.loss = loss
        super().__init__(
            f"training diverged: loss is {loss} at iteration {iteration} of {total} (lr {lr:.4g}); "
            "lower train.lr, add train.warmup_iters, or use train.amp 'bf16' / 'off' instead of 'fp16'"
        )


@dataclass
class TrainResult:
    """What a training stage reports. Curves are ``(iteration, value)`` pairs, iterations 1-based.

    ``seconds`` (checkpoint writing excluded) and ``images_per_s`` cover all
    training of this checkpoint, across resumes; ``final_loss`` is the mean loss of
    the last logging window; ``resumed_from`` is the iteration training started at.
    """

    iterations: int
    seconds: float
    final_loss: float
    images_per_s: float
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    lr_curve: list[tuple[int, float]] = field(default_factory=list)
    resumed_from: int = 0


def default_log_every(iterations: int) -> int:
    """About 100 points per curve, read every 5 to 20 iterations (each read waits for the device)."""
    return max(5, min(20, iterations // 100))


@dataclass
class _Progress:
    """The part of a run that is not tensors: curves, unlogged losses, seconds spent."""

    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    lr_curve: list[tuple[int, float]] = field(default_factory=list)
    pending: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def as_state(self) -> dict[str, Any]:
        return {
            "loss_curve": [list(p) for p in self.loss_curve],
            "lr_curve": [list(p) for p in self.lr_curve],
            "pending": list(self.pending),
            "seconds": self.seconds,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> _Progress:
        return cls(
            loss_curve=[(int(i), float(v)) for i, v in state["loss_curve"]],
            lr_curve=[(int(i), float(v)) for i, v in state["lr_curve"]],
            pending=[float(v) for v in state["pending"]],
            seconds=float(state["seconds"]),
        )

    def log_point(self, iteration: int, lr: float) -> float:
        """Close the logging window at ``iteration``: its mean loss becomes a curve point."""
        mean = math.fsum(self.pending) / len(self.pending)
        self.pending.clear()
        self.loss_curve.append((iteration, mean))
        self.lr_curve.append((iteration, lr))
        return mean

    def result(self, settings: TrainSettings, resumed_from: int) -> TrainResult:
        images = settings.iterations * settings.batch_size
        return TrainResult(
            iterations=settings.iterations,
            seconds=self.seconds,
            final_loss=self.loss_curve[-1][1] if self.loss_curve else math.nan,
            images_per_s=images / self.seconds if self.seconds > 0 else math.nan,
            loss_curve=list(self.loss_curve),
            lr_curve=list(self.lr_curve),
            resumed_from=resumed_from,
        )


def _amp_dtype(settings: TrainSettings, device: torch.device) -> torch.dtype | None:
    if settings.amp == "off":
        return None
    if settings.amp == "fp16" and device.type != "cuda":
        raise UserError(
            f"train.amp 'fp16' needs a CUDA device (this job runs on {device}): CPU autocast has no "
            "float16 kernels worth using and no loss scaling; use 'bf16' or 'off'"
        )
    return torch.float16 if settings.amp == "fp16" else torch.bfloat16


class _Trainer:
    """Model, optimizer and grad scaler of one run, its step, and its checkpointable state."""

    def __init__(
        self,
        model: nn.Module,
        settings: TrainSettings,
        device: torch.device,
        ignore_index: int,
        num_classes: int | None,
    ):
        self.model = model
        self.num_classes = num_classes
        self.settings = settings
        self.device = device
        self.ignore_index = ignore_index
        self.amp_dtype = _amp_dtype(settings, device)
        self.channels_last = settings.channels_last and device.type == "cuda"
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad],
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16")
        self.device_losses: list[Tensor] = []  # since the last read, still on the device

    def lr_at(self, iteration: int) -> float:
        s = self.settings
        return poly_lr(s.lr, iteration, s.iterations, s.poly_power, s.warmup_iters)

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step(self, images: Tensor, masks: Tensor, iteration: int) -> None:
        """One SGD step at the poly learning rate of the 0-based ``iteration``."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(iteration)
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        masks = masks.to(self.device, non_blocking=True).long()
        with self._autocast():
            heads = forward_heads(self.model, images, self.num_classes)
            loss = segmentation_loss(heads, masks, self.settings.aux_weight, self.ignore_index)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.device_losses.append(loss.detach())

    def read_losses(self, progress: _Progress, iteration: int) -> None:
        """Move the losses up to ``iteration`` to ``progress.pending`` (one sync); NaN / inf raises."""
        if not self.device_losses:
            return
        values = torch.stack(self.device_losses).float().tolist()
        self.device_losses.clear()
        first = iteration - len(values) + 1
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                it = first + offset
                raise TrainingDiverged(it, self.settings.iterations, value, self.lr_at(it - 1))
        progress.pending.extend(values)

    def state(self, iteration: int, progress: _Progress, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "iteration": iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "progress": progress.as_state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Optimizer, scaler and generators as the checkpoint left them (weights are loaded earlier)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def train(
    model: nn.Module,
    dataset: Dataset,
    settings: TrainSettings,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    checkpoint_path: Path | None = None,
    ignore_index: int = 255,
    num_classes: int | None = None,
    on_progress: ProgressCallback | None = None,
    log_every: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_seconds: float | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``dataset`` (``(image [3,H,W], mask [H,W])`` samples).

    With ``checkpoint_path``, the state is saved there at the end and every
    ``settings.checkpoint_every`` iterations, and an existing complete checkpoint
    is resumed; one that already reached ``settings.iterations`` only loads the
    weights (no step runs). ``on_progress(iteration, total, loss)`` is called every
    ``log_every`` iterations (default :func:`default_log_every`) and at the end.
    ``num_classes`` (the dataset's) is checked against the model's output channels.

    ``should_stop()`` is asked after every step; when it says yes, the state is
    saved at that iteration (as a periodic checkpoint would be, so a resume
    continues bit-identically) and :class:`TrainingInterrupted` is raised. An
    interrupted run thus loses at most one step instead of everything since the
    last ``checkpoint_every``.

    ``checkpoint_seconds`` also saves the state once that much wall time has passed
    since the last save, whatever ``checkpoint_every`` says: the runner passes it so
    that a worker lost without warning (a killed node, the OOM killer) costs at most
    that much training, while the iteration interval stays a setting of the
    experiment. Where the save lands does not change the result: a resume continues
    bit-identically from any iteration.
    """
    device = torch.device(device)
    _amp_dtype(settings, device)  # a bad AMP choice fails before anything is loaded
    total = settings.iterations
    if log_every is not None and log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    log_every = log_every or default_log_every(total)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    fingerprint = training_fingerprint(settings, seed)

    with deterministic_mode(settings.deterministic):
        seed_everything(seed)
        model.to(device)
        # On the CPU: load_state_dict copies to the parameters' device, without a second copy there.
        state = load_checkpoint(checkpoint_path) if checkpoint_path else None
        progress, start = _Progress(), 0
        if state is not None and checkpoint_path is not None:
            check_fingerprint(state, fingerprint, checkpoint_path)
            model.load_state_dict(state["model"])
            progress, start = _Progress.from_state(state["progress"]), int(state["iteration"])
            if start >= total:
                return progress.result(settings, resumed_from=start)

        trainer = _Trainer(model, settings, device, ignore_index, num_classes)
        if state is not None:
            trainer.restore(state)
        loader = training_loader(
            dataset,
            settings.batch_size,
            settings.num_workers,
            seed,
            start,
            total,
            pin_memory=device.type == "cuda",
        )

        model.train()
        began = saved_at = time.perf_counter()
        for iteration, (images, masks) in enumerate(loader, start=start + 1):  # 1-based: steps done
            trainer.step(images, masks, iteration - 1)
            if iteration % log_every == 0 or iteration == total:
                trainer.read_losses(progress, iteration)
                mean = progress.log_point(iteration, trainer.lr_at(iteration - 1))
                if on_progress is not None:
                    on_progress(iteration, total, mean)
            every = settings.checkpoint_every
            due = (every and iteration % every == 0) or (
                checkpoint_seconds is not None and time.perf_counter() - saved_at >= checkpoint_seconds
            )
            if checkpoint_path and due and iteration < total:
                trainer.read_losses(progress, iteration)  # never checkpoint weights a NaN already reached
                trainer.sync()
                progress.seconds += time.perf_counter() - began
                save_checkpoint(checkpoint_path, trainer.state(iteration, progress, fingerprint))
                began = saved_at = time.perf_counter()
            if should_stop is not None and iteration < total and should_stop():
                saved = None
                if checkpoint_path:
                    trainer.read_losses(progress, iteration)
                    trainer.sync()
                    progress.seconds += time.perf_counter() - began
                    save_checkpoint(checkpoint_path, trainer.state(iteration, progress, fingerprint))
                    saved = iteration
                raise TrainingInterrupted(saved, total)

        trainer.sync()
        progress.seconds += time.perf_counter() - began
        if checkpoint_path:
            save_checkpoint(checkpoint_path, trainer.state(total, progress, fingerprint))
    return progress.result(settings, resumed_from=start)
