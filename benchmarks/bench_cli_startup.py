"""`segbench --help` must cost less than a quarter of `import torch`.

Both are timed side by side in this one run, as fresh interpreters (what a
user waits for), interleaved so machine noise hits both alike; the medians'
ratio is the result. Run: .venv/bin/python benchmarks/bench_cli_startup.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

TARGET = 0.25
ROUNDS = 7


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    commands = {
        "segbench --help": [sys.executable, "-m", "segbench", "--help"],
        "segbench list models": [sys.executable, "-m", "segbench", "list", "models"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }
    for cmd in commands.values():  # warm the OS file cache for both
        wall(cmd)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(ROUNDS):
        for name, cmd in commands.items():
            times[name].append(wall(cmd))
    torch_s = statistics.median(times['python -c "import torch"'])
    ok = True
    for name, samples in times.items():
        median = statistics.median(samples)
        ratio = median / torch_s
        line = f"{name:28s} median {median * 1000:7.0f} ms   ratio vs import torch {ratio:5.2f}"
        if name.startswith("segbench"):
            passed = ratio < TARGET
            ok &= passed
            line += f"   target < {TARGET:.2f}: {'ok' if passed else 'MISSED'}"
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
