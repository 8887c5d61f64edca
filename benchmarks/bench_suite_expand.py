"""A runaway grid is refused at once, and expansion stays linear in the number of jobs.

Three suites are timed side by side in this one run, in process (parse + expand, what
``--dry-run`` does before printing): a 420,000-job grid refused by the job cap, and
grids of 1,000 and 4,000 jobs. Targets, as ratios measured in the same run:

* refusing the 420,000-job grid costs less than a tenth of expanding the 1,000-job one
  (the count comes from the grid's lengths; no job is built);
* 4,000 jobs cost less than 6x what 1,000 cost (linear: 4x, plus noise; quadratic work
  would be 16x).

Run: PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_suite_expand.py
"""

from __future__ import annotations

import statistics
import sys
import time

from segbench.config import parse_suite
from segbench.errors import UserError
from segbench.suite import expand

ROUNDS = 3


def grid_suite(*lengths: int) -> str:
    """A suite whose grid has factors of these lengths (train settings, so any value is valid)."""
    names = [
        "train.iterations",
        "train.batch_size",
        "train.warmup_iters",
        "eval.batch_size",
        "measure.warmup",
    ]
    grid = "".join(
        f"    {name}: [{', '.join(str(i + 1) for i in range(n))}]\n"
        for name, n in zip(names, lengths, strict=False)
    )
    return (
        "name: bench\n"
        "datasets: [{name: diagnostic, options: {size: 64, train_length: 2000}}]\n"
        'models: [{name: "tests.tinymodels:tiny_segnet"}]\n'
        f"variants:\n  grid:\n{grid}"
        "stages: [complexity, train, eval]\n"
    )


def seconds(text: str) -> float:
    """Parse + expand; the grid past the cap must be refused by the cap, the others expand."""
    start = time.perf_counter()
    try:
        expand(parse_suite(text, "bench.yaml"))
    except UserError as exc:
        if "more than the cap" not in str(exc):
            raise
    return time.perf_counter() - start


def main() -> int:
    suites = {
        "420,000 jobs (refused)": grid_suite(100, 60, 70),
        "1,000 jobs": grid_suite(10, 10, 10),
        "4,000 jobs": grid_suite(10, 10, 10, 4),
    }
    times: dict[str, list[float]] = {name: [] for name in suites}
    for _ in range(ROUNDS):
        for name, text in suites.items():
            times[name].append(seconds(text))
    median = {name: statistics.median(samples) for name, samples in times.items()}
    for name, value in median.items():
        print(f"{name:>24}: {value * 1000:8.1f} ms")
    refused = median["420,000 jobs (refused)"] / median["1,000 jobs"]
    growth = median["4,000 jobs"] / median["1,000 jobs"]
    print(f"refusal / 1,000-job expansion: {refused:.3f} (target < 0.1)")
    print(f"4,000 / 1,000 jobs: {growth:.2f}x (target < 6)")
    return 0 if refused < 0.1 and growth < 6 else 1


if __name__ == "__main__":
    sys.exit(main())
