"""`measure_latency` must agree with `torch.utils.benchmark.Timer.blocked_autorange`.

The same model and input are timed by both in this one run, interleaved over
a few rounds so machine noise hits both alike; the result is the ratio of the
medians (segbench / torch.utils.benchmark), target 0.9–1.1 on CPU. Both run
under ``torch.inference_mode()`` with the model in eval mode and the same
thread count.

Run: .venv/bin/python benchmarks/bench_latency.py [--model NAME] [--size 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torchvision
from torch.utils.benchmark import Timer

from segbench.measure import hardware_identity, hardware_key, measure_latency

TARGET = (0.9, 1.1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="lraspp_mobilenet_v3_large", help="a torchvision segmentation model"
    )
    parser.add_argument("--size", type=int, default=256, help="input H = W")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="intra-op CPU threads for both timers")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both timers")
    parser.add_argument(
        "--min-run-time", type=float, default=2.0, help="blocked_autorange's min_run_time (s)"
    )
    return parser.parse_args(argv)


def timer_median_ms(
    model: torch.nn.Module, shape: tuple[int, ...], device: str, threads: int, min_run_time: float
) -> float:
    """torch.utils.benchmark's median time per call, in ms (it synchronises CUDA itself)."""
    batch = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    timer = Timer(stmt="model(batch)", globals={"model": model, "batch": batch}, num_threads=threads)
    with torch.inference_mode():
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1000


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shape = (args.batch, 3, args.size, args.size)
    model = torchvision.models.get_model(args.model, weights=None, weights_backbone=None, num_classes=21)
    model.eval().to(args.device)
    identity = hardware_identity(args.device, threads=args.threads)
    print(
        f"{args.model} at {shape[0]}×3×{args.size}×{args.size} on {identity['device']} "
        f"({identity['gpu_name'] or identity['cpu_model']}), {args.threads} thread(s), "
        f"torch {identity['torch']}, hardware key {hardware_key(identity)}"
    )
    ours: list[float] = []
    theirs: list[float] = []
    previous_threads = torch.get_num_threads()
    for round_ in range(1, args.rounds + 1):
        stats = measure_latency(model, shape, args.device, threads=args.threads)
        torch.set_num_threads(args.threads)
        try:
            reference = timer_median_ms(model, shape, args.device, args.threads, args.min_run_time)
        finally:
            torch.set_num_threads(previous_threads)
        ours.append(stats.median_ms)
        theirs.append(reference)
        print(
            f"round {round_}: measure_latency median {stats.median_ms:8.3f} ms "
            f"(n={len(stats.samples_ms)}, cv {stats.cv:.3f}{', noisy' if stats.noisy else ''}, "
            f"warm-up {stats.warmup_iters})   blocked_autorange median {reference:8.3f} ms"
        )
    ratio = statistics.median(ours) / statistics.median(theirs)
    line = (
        f"median of medians: measure_latency {statistics.median(ours):.3f} ms, "
        f"blocked_autorange {statistics.median(theirs):.3f} ms, ratio {ratio:.3f}"
    )
    if args.device != "cpu":
        print(line)
        return 0
    passed = TARGET[0] <= ratio <= TARGET[1]
    print(f"{line}   target {TARGET[0]}–{TARGET[1]} on CPU: {'ok' if passed else 'MISSED'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
