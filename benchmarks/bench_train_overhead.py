"""Training-loop overhead: segbench's ``train`` vs a bare hand-written PyTorch loop, in one run.

The target (issue 5): segbench's train stage reaches >= 95% of the throughput
(images/s) of a plain SGD + cross-entropy loop on the same model, data and
iterations. Both start from the same initial weights and are warmed up. Each
repeat times one run of each, back to back (in alternating order), and gives a
ratio bare time / segbench time = segbench images/s / bare images/s; the median
of those paired ratios is the result, robust to load that other processes put
on the machine. Each timing is the whole call, set-up included (DataLoader,
optimizer), as a job would pay it.

On CPU the benchmark uses one intra-op thread unless ``--threads`` says
otherwise: on a machine shared with other work, thread contention makes
two-thread timings swing by 2× from run to run and swamps the loop overhead.

segbench does more per iteration than the bare loop (poly learning rate, labelled-
pixel normalisation, NaN detection, curves); the point is that none of it waits
for the device: losses are read every ``log_every`` iterations, not per step.

    .venv/bin/python benchmarks/bench_train_overhead.py [--iterations 40] [--device cpu]

Exit status 1 if the ratio is below 0.95.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from segbench.config import TrainSettings
from segbench.engine.train import train

IGNORE = 255
NUM_CLASSES = 5


class FewConvs(nn.Module):
    """Three conv-BN-ReLU blocks and a 1×1 classifier: small enough that overhead would show."""

    def __init__(self, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for _ in range(3):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(width, NUM_CLASSES, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": self.classifier(self.body(x))}


def bare_loop(
    model: nn.Module,
    dataset: TensorDataset,
    iterations: int,
    batch_size: int,
    lr: float,
    device: torch.device,
) -> None:
    """The baseline: shuffled DataLoader, SGD with momentum, cross-entropy, nothing else."""
    model.to(device).train()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    done = 0
    while done < iterations:
        for images, masks in loader:
            images, masks = images.to(device), masks.to(device)
            loss = F.cross_entropy(model(images)["out"], masks, ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == iterations:
                break


def _timed(fn: object, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="square image side in px")
    parser.add_argument("--width", type=int, default=16, help="conv channels")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (CPU default: 1)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, args.size, args.size, generator=generator)
    masks = torch.randint(0, NUM_CLASSES, (64, args.size, args.size), generator=generator)
    masks[:, :4] = IGNORE
    dataset = TensorDataset(images, masks)
    torch.manual_seed(0)
    initial = FewConvs(args.width)
    lr = 0.01
    settings = TrainSettings(
        iterations=args.iterations, batch_size=args.batch_size, lr=lr, aux_weight=None, deterministic=False
    )

    def run_bare(iterations: int = args.iterations) -> None:
        bare_loop(copy.deepcopy(initial), dataset, iterations, args.batch_size, lr, device)

    def run_segbench(s: TrainSettings = settings) -> None:
        train(copy.deepcopy(initial), dataset, s, device=device)

    run_bare(5), run_segbench(settings.model_copy(update={"iterations": 5}))  # warm-up: allocator, kernels
    bare_times, segbench_times = [], []
    for repeat in range(args.repeats):
        if repeat % 2:
            segbench_times.append(_timed(run_segbench, device))
            bare_times.append(_timed(run_bare, device))
        else:
            bare_times.append(_timed(run_bare, device))
            segbench_times.append(_timed(run_segbench, device))
    images_done = args.iterations * args.batch_size
    ratio = statistics.median(b / s for b, s in zip(bare_times, segbench_times, strict=True))
    print(
        f"{args.iterations} iterations x batch {args.batch_size} of {args.size}x{args.size}, width {args.width}, "
        f"{device}, {torch.get_num_threads()} threads, {args.repeats} paired repeats"
    )
    print(f"  bare PyTorch loop : {images_done / statistics.median(bare_times):8.1f} images/s (median)")
    print(f"  segbench train()  : {images_done / statistics.median(segbench_times):8.1f} images/s (median)")
    print(f"  throughput ratio segbench/bare: {ratio:.3f} (median of paired runs; target >= 0.95)")
    ok = ratio >= 0.95
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
