"""Regression verdicts on this machine: the false-positive rate over A/A pairs, detection of 10 % and 50 % slowdowns.

Every pair is what a user runs: a temporary git repository with a plain model
(tests/test_aa.py's: real convolutions, one thread), ``segbench run --at
BASE,HEAD --rerun all`` (interleaved timing rounds, each in a fresh process),
then ``segbench check --baseline BASE --head HEAD``. A/A pairs have identical
model code (the second commit adds a file); the slowed pairs make the model
about 10 % or 50 % slower by really computing more (extra convolutions, the
last over a fraction of the rows). Each pair is a fresh repository
and database, so no pair has history: the rounds alone decide, as on a first
run. All in one process run, so the rates share the machine's load.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_aa.py [--aa 6] [--slow 3] [--rounds 5]

Measured on the shared 2-core machine (load average 4–7, ``--aa 3 --slow 1``, 502 s): A/A 0/3
flagged; "10 %" (measured +4.2 %) 0/1, "50 %" (measured +24.1 %) 0/1 — see docs/regressions.md.

Prints, per kind of pair, how many were flagged (``check`` exit 1 on latency)
and the verdicts and changes; exit status 1 if any A/A pair was flagged.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segbench.regress.at import run_at_revisions  # noqa: E402
from tests.test_aa import SUITE, check  # noqa: E402
from tests.test_regress_support import commit_file, init_repo  # noqa: E402

#: the model, slowed by ``extra`` body convolutions' worth of real work (0: the plain model): whole
#: extra convolutions, then one over the leading fraction of the rows. The body's three convolutions
#: are about 90 % of the forward, so ``extra`` = 3.33 × the slowdown wanted; the printed change is
#: what the rounds measured.
MODEL = textwrap.dedent(
    """
    import torch.nn.functional as F
    from torch import nn


    class Plain(nn.Module):
        def __init__(self, num_classes: int, width: int = 16) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, width, 3, padding=1)
            self.body = nn.Sequential(
                *[m for _ in range(3) for m in (nn.Conv2d(width, width, 3, padding=1), nn.ReLU())]
            )
            self.classifier = nn.Conv2d(width, num_classes, 1)
            self.extra = {extra}

        def forward(self, x):
            y = self.body(F.relu(self.stem(x)))
            waste = 0 * y
            for _ in range(int(self.extra)):
                waste = waste + self.body[0](y)
            rows = int(y.shape[-2] * (self.extra % 1))
            if rows:
                waste[..., :rows, :] += self.body[0](y[..., :rows, :])
            return {{"out": self.classifier(y + 0 * waste)}}


    def plain(num_classes: int) -> Plain:
        return Plain(num_classes)
    """
)


def pair(root: Path, extra: float, rounds: int) -> tuple[int, str, str]:
    """One user's pair: BASE the plain model, HEAD ``extra`` slower (0: identical code)."""
    repo = init_repo(root)
    suite = re.sub(r"rounds: \d+", f"rounds: {rounds}", SUITE)
    commit_file(repo, "suite.yaml", suite, "suite")
    base = commit_file(repo, "mymodels.py", MODEL.format(extra=0.0), "plain model")
    if extra:
        head = commit_file(repo, "mymodels.py", MODEL.format(extra=extra), f"{extra} convolutions more")
    else:
        head = commit_file(repo, ".gitignore", "results/\n", "ignore results")
    db = f"sqlite:///{root.parent / (root.name + '.db')}"
    run_at_revisions(repo / "suite.yaml", [base, head], ["--devices", "cpu", "--rerun", "all"], db)
    code, doc = check(repo, db, base, head)
    row = next(r for r in doc["rows"] if r["metric"] == "latency_ms")  # type: ignore[union-attr, index]
    return code, str(row["verdict"]), str(row["change"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa", type=int, default=6, help="A/A pairs")
    parser.add_argument("--slow", type=int, default=3, help="pairs per slowdown (10 %% and 50 %%)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds per side")
    args = parser.parse_args()
    plan = [("A/A", 0.0)] * args.aa + [("+10%", 0.33)] * args.slow + [("+50%", 1.67)] * args.slow
    outcomes: dict[str, list[tuple[int, str, str]]] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-aa-") as scratch:
        for i, (kind, extra) in enumerate(plan):
            found = pair(Path(scratch) / f"p{i}", extra, args.rounds)
            outcomes.setdefault(kind, []).append(found)
            print(f"{kind:5} pair {i}: check exit {found[0]}, latency {found[1]} ({found[2]})", flush=True)
    seconds = time.perf_counter() - start
    print(f"\n{len(plan)} pairs, {args.rounds} rounds a side, in {seconds:.0f} s")
    for kind, found in outcomes.items():
        flagged = sum(code == 1 and verdict == "regressed" for code, verdict, _ in found)
        label = "false-positive rate" if kind == "A/A" else f"detection rate ({kind})"
        print(f"{label}: {flagged}/{len(found)} = {flagged / len(found):.0%}")
    print(json.dumps({k: [v for _, v, _ in f] for k, f in outcomes.items()}))
    return 1 if any(code == 1 for code, _, _ in outcomes.get("A/A", [])) else 0


if __name__ == "__main__":
    raise SystemExit(main())
