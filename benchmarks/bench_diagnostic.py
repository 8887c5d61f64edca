"""Throughput of the embedded diagnostic dataset on one core, against the 2,000 samples/s target.

Generation must never bottleneck training: a CPU training step of a small model
on a batch of 8 takes tens of milliseconds, a GPU step a few, so the data side
needs well over a thousand 128×128 samples per second per worker. This prints
samples/s of ``dataset[i]`` as the evaluation loader reads it (render, then
normalise) and, for information, with the training augmentation (random scale,
crop, flip), and the ratio of the first to the target.

The same-run baseline is the generator as it was before its speed-up, frozen in
``diagnostic_scene_before.py``: its passes alternate with the current ones, so
the speed-up ratio holds whatever else the machine is doing (the absolute
samples/s does not). The script first checks that both render bit-identical
scenes and exits 1 if they do not.

    .venv/bin/python benchmarks/bench_diagnostic.py [--size 128] [--samples 2000]
"""

from __future__ import annotations

import argparse
import sys
import time

import diagnostic_scene_before as before
import numpy as np
import torch

from segbench.data import build_dataset
from segbench.data.diagnostic import DiagnosticDataset
from segbench.data.transforms import TrainAugment

TARGET = 2000.0
IDENTITY_CHECKED = 200  # scenes per split compared bit for bit


class FrozenScenes(DiagnosticDataset):
    """The same dataset, rendered by the frozen pre-speed-up generator."""

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self._stream, index])))
        bank = before.noise_bank(self.size, self.seed, float(self.noise)) if self.noise > 0 else None
        return before.render_scene(rng, self.size, bank)


def one_pass(dataset: torch.utils.data.Dataset, count: int) -> float:
    """Samples/s of one pass over ``count`` samples."""
    start = time.perf_counter()
    for index in range(count):
        dataset[index]
    return count / (time.perf_counter() - start)


def best_rates(datasets: list[torch.utils.data.Dataset], count: int, repeats: int) -> list[float]:
    """Best of ``repeats`` passes of each dataset, passes interleaved (the best is the least disturbed)."""
    for dataset in datasets:
        dataset[0]  # first touch builds the per-process noise bank; not part of the steady state
    best = [0.0] * len(datasets)
    for _ in range(repeats):
        for i, dataset in enumerate(datasets):
            best[i] = max(best[i], one_pass(dataset, count))
    return best


def identical(size: int, count: int) -> bool:
    """Whether the current and the frozen generator give the same image and label bits."""
    for split in ("train", "val"):
        options = {"size": size, "train_length": count, "val_length": count}
        current, frozen = DiagnosticDataset(split, **options), FrozenScenes(split, **options)
        for index in range(count):
            (image, labels), (image_before, labels_before) = current.scene(index), frozen.scene(index)
            if image.tobytes() != image_before.tobytes() or labels.tobytes() != labels_before.tobytes():
                print(f"  {split} scene {index} differs from the frozen generator's", file=sys.stderr)
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image side in px")
    parser.add_argument("--samples", type=int, default=2000, help="samples per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best is reported")
    args = parser.parse_args()
    torch.set_num_threads(1)

    checked = min(IDENTITY_CHECKED, args.samples)
    same = identical(args.size, checked)
    options = {"size": args.size, "train_length": args.samples, "val_length": args.samples}
    plain, frozen = best_rates(
        [build_dataset("diagnostic", "val", **options), FrozenScenes("val", **options)],
        args.samples,
        args.repeats,
    )
    (augmented,) = best_rates(
        [build_dataset("diagnostic", "train", augment=TrainAugment(crop_size=args.size), **options)],
        args.samples,
        args.repeats,
    )
    print(f"diagnostic dataset, {args.size}×{args.size}, one core (torch threads = 1)")
    print(f"  generation (eval sample):       {plain:8.0f} samples/s")
    print(f"  with the training augmentation: {augmented:8.0f} samples/s")
    print(
        f"  same-run baseline (generator before the speed-up): {frozen:8.0f} samples/s → "
        f"speed-up {plain / frozen:.2f}×"
    )
    print(f"  scenes bit-identical to the baseline's: {'yes' if same else 'NO'} ({checked} per split)")
    print(
        f"  target {TARGET:.0f} samples/s → ratio {plain / TARGET:.2f}× ({'met' if plain >= TARGET else 'MISSED'})"
    )
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
