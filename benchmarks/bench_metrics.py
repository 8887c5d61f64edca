"""Confusion-matrix accumulation: segbench vs torchmetrics, measured side by side in one run.

The target (issue 5): ``ConfusionMatrix.update`` at least as fast as torchmetrics'
``MulticlassJaccardIndex.update`` on the same tensors (21 classes, 8×512×512, CPU,
ignore_index 255), with identical values (1e-6). Both are timed on label-map
predictions and on logits (where both arg-max first), alternating runs and
keeping each side's best (minimum) time, the usual estimator of a cost under
background load; the ratio is baseline time / segbench time, so
>= 1.0 means segbench is at least as fast.

    .venv/bin/python benchmarks/bench_metrics.py [--repeats 7] [--device cpu]

Exit status 1 if the values differ or a ratio is below 1.0.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from segbench.engine.metrics import ConfusionMatrix

NUM_CLASSES = 21
IGNORE = 255


def _inputs(device: torch.device, batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, NUM_CLASSES, (batch, size, size), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.1] = IGNORE
    logits = torch.randn(batch, NUM_CLASSES, size, size, generator=generator)
    return logits.argmax(1).to(device), logits.to(device), target.to(device)


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _race(
    ours: Callable[[], object], theirs: Callable[[], object], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Best (minimum) seconds of each, after one warm-up call each, runs interleaved."""
    ours(), theirs()
    ours_times, their_times = [], []
    for _ in range(repeats):
        ours_times.append(_seconds(ours, device))
        their_times.append(_seconds(theirs, device))
    return min(ours_times), min(their_times)


def _differences(pred: torch.Tensor, target: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Largest absolute differences between segbench's and torchmetrics' values on one batch."""
    ours = ConfusionMatrix(NUM_CLASSES, IGNORE, device=device)
    ours.update(pred, target)
    scores = ours.compute()
    per_class = MulticlassJaccardIndex(NUM_CLASSES, average=None, ignore_index=IGNORE).to(device)
    macro = MulticlassJaccardIndex(NUM_CLASSES, average="macro", ignore_index=IGNORE).to(device)
    accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro", ignore_index=IGNORE).to(device)
    for metric in (per_class, macro, accuracy):
        metric.update(pred, target)
    return {
        "per-class IoU": max(
            abs(a - b) for a, b in zip(scores["per_class_iou"], per_class.compute().tolist(), strict=True)
        ),
        "mIoU": abs(scores["mIoU"] - float(macro.compute())),
        "pixel accuracy": abs(scores["pixel_acc"] - float(accuracy.compute())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    labels, logits, target = _inputs(device, args.batch, args.size)
    print(
        f"{NUM_CLASSES} classes, {args.batch}x{args.size}x{args.size}, ignore_index {IGNORE}, {device}, "
        f"{torch.get_num_threads()} threads, best of {args.repeats}"
    )

    ok = True
    for name, pred in (("label maps", labels), ("logits", logits)):
        ours = ConfusionMatrix(NUM_CLASSES, IGNORE, device=device)
        for validate in (True, False):
            theirs = MulticlassJaccardIndex(NUM_CLASSES, ignore_index=IGNORE, validate_args=validate).to(
                device
            )
            ours_s, theirs_s = _race(
                lambda o=ours, p=pred: o.update(p, target),
                lambda t=theirs, p=pred: t.update(p, target),
                args.repeats,
                device,
            )
            ratio = theirs_s / ours_s
            target_note = "target >= 1.0" if validate else "informative: torchmetrics without input checks"
            print(
                f"  {name:10s} validate_args={validate!s:5s}: segbench {ours_s * 1e3:7.1f} ms, "
                f"torchmetrics {theirs_s * 1e3:7.1f} ms, speed ratio segbench/torchmetrics {ratio:5.2f}x "
                f"({target_note})"
            )
            if validate:
                ok &= ratio >= 1.0

    for name, pred in (("label maps", labels), ("logits", logits)):
        diffs = _differences(pred, target, device)
        equal = all(d <= 1e-6 for d in diffs.values())
        print(
            f"  {name:10s} values equal within 1e-6: "
            + ("yes" if equal else "NO")
            + " ("
            + ", ".join(f"{k} max |diff| {v:.1e}" for k, v in diffs.items())
            + ")"
        )
        ok &= equal
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
