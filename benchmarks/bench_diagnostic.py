"""Throughput of the embedded diagnostic dataset on one core, against the 2,000 samples/s target.

Generation must never bottleneck training: a CPU training step of a small model
on a batch of 8 takes tens of milliseconds, a GPU step a few, so the data side
needs well over a thousand 128×128 samples per second per worker. This prints
samples/s of ``dataset[i]`` as the evaluation loader reads it (render, then
normalise) and, for information, with the training augmentation (random scale,
crop, flip), and the ratio of the first to the target.

    .venv/bin/python benchmarks/bench_diagnostic.py [--size 128] [--samples 2000]
"""

from __future__ import annotations

import argparse
import time

import torch

from segbench.data import build_dataset
from segbench.data.transforms import TrainAugment

TARGET = 2000.0


def samples_per_second(dataset: torch.utils.data.Dataset, count: int, repeats: int) -> float:
    """Best of ``repeats`` passes over ``count`` samples (the best pass is the least disturbed)."""
    best = 0.0
    dataset[0]  # first touch builds the per-process noise bank; not part of the steady state
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(count):
            dataset[index]
        best = max(best, count / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image side in px")
    parser.add_argument("--samples", type=int, default=2000, help="samples per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best is reported")
    args = parser.parse_args()
    torch.set_num_threads(1)

    options = {"size": args.size, "train_length": args.samples, "val_length": args.samples}
    plain = samples_per_second(build_dataset("diagnostic", "val", **options), args.samples, args.repeats)
    augmented = samples_per_second(
        build_dataset("diagnostic", "train", augment=TrainAugment(crop_size=args.size), **options),
        args.samples,
        args.repeats,
    )
    print(f"diagnostic dataset, {args.size}×{args.size}, one core (torch threads = 1)")
    print(f"  generation (eval sample):       {plain:8.0f} samples/s")
    print(f"  with the training augmentation: {augmented:8.0f} samples/s")
    print(
        f"  target {TARGET:.0f} samples/s → ratio {plain / TARGET:.2f}× ({'met' if plain >= TARGET else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
