"""Regression verdicts on this machine: the false-positive rate over A/A pairs, detection of 10 % and 50 % slowdowns.

What a user runs, at scale: one temporary git repository whose commits carry
a plain model (tests/test_aa.py's: real convolutions, one thread) — ``2·aa``
commits of identical code (each adds an unrelated file), then ``slow``
commits of a model 10 % slower and ``slow`` of one 50 % slower — measured by
one ``segbench run --at`` (round 0 in each revision's run, rounds 1–7 in
lockstep sweeps of all revisions), then judged by ``segbench check`` on
disjoint pairs: A/A pairs (A1, A2), (A3, A4), …, and each slowed commit
against its own identical one. No pair has history beyond its sweeps.

The slowdowns are exact by calibration, measured in this run: the slowed
model runs its first body convolution again over a number of rows, and
that fraction is found by bisection so that, timed against the plain model in
alternating bursts in this process, the slowed one takes 1.10× (1.50×) as long.
The calibrated ratios are printed with the rates.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_aa.py [--aa 6] [--slow 3]

Prints each pair's verdict and change, then the false-positive rate and the
detection rates; exit status 1 if any A/A pair was flagged. Measured on the
shared 2-core machine (671 s): A/A 0/6 flagged, 10 % 2/3, 50 % 3/3 — see
docs/regressions.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
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

#: the model; ``extra`` > 0 runs the body's first convolution again over that fraction of the rows
#: (a whole pass per 1.0): one more operation, whose cost grows smoothly with the rows
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
            self.extra = {extra!r}

        def forward(self, x):
            y = self.body(F.relu(self.stem(x)))
            extra = self.extra
            while extra > 0:
                rows = max(1, int(y.shape[-2] * min(extra, 1.0) + 0.5))  # int(): fvcore traces shapes as tensors
                self.body[0](y[..., :rows, :])  # computed and dropped: eager mode runs it all the same
                extra -= 1.0
            return {{"out": self.classifier(y)}}


    def plain(num_classes: int) -> Plain:
        return Plain(num_classes)
    """
)


def build(extra: float) -> object:
    """The model of ``MODEL`` with ``extra``, built in this process (for the calibration)."""
    namespace: dict[str, object] = {}
    exec(MODEL.format(extra=extra), namespace)  # noqa: S102 - our own template
    return namespace["plain"](7)  # type: ignore[operator]


def ratio(extra: float, bursts: int = 60, burst: int = 5) -> float:
    """Median over alternating bursts of (slowed burst median) / (plain burst median), one thread, 64×64."""
    import torch

    torch.set_num_threads(1)
    plain, slowed = build(0.0).eval(), build(extra).eval()  # type: ignore[attr-defined]
    x = torch.randn(1, 3, 64, 64)

    def timed(model: object) -> float:
        out = []
        for _ in range(burst):
            start = time.perf_counter_ns()
            model(x)  # type: ignore[operator]
            out.append(time.perf_counter_ns() - start)
        return statistics.median(out)

    with torch.inference_mode():
        for _ in range(10):
            plain(x), slowed(x)
        ratios = []
        for i in range(bursts):
            if i % 2:  # the order alternates, so neither always runs on a cache the other left
                a, b = timed(plain), timed(slowed)
            else:
                b, a = timed(slowed), timed(plain)
            ratios.append(b / a)
    return statistics.median(ratios)


def calibrate(target: float) -> tuple[float, float]:
    """The ``extra`` whose slowdown is ``target`` (bisection), and the ratio measured at it."""
    low, high = 0.0, 4.0
    for _ in range(10):
        mid = (low + high) / 2
        low, high = (mid, high) if ratio(mid) < target else (low, mid)
    extra = round((low + high) / 2, 3)
    return extra, ratio(extra, bursts=200)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa", type=int, default=6, help="disjoint A/A pairs")
    parser.add_argument("--slow", type=int, default=3, help="pairs per slowdown (10 %% and 50 %%)")
    args = parser.parse_args()
    start = time.perf_counter()
    slowdowns = {label: calibrate(target) for label, target in (("+10%", 1.10), ("+50%", 1.50))}
    for label, (extra, measured) in slowdowns.items():
        print(f"slowdown {label}: one convolution again over {extra:.3f}× the rows, measured ×{measured:.3f}")
    with tempfile.TemporaryDirectory(prefix="bench-aa-") as scratch:
        repo = init_repo(Path(scratch) / "proj")
        commit_file(repo, "suite.yaml", SUITE, "suite")
        same = [commit_file(repo, "mymodels.py", MODEL.format(extra=0.0), "plain model")]
        same += [commit_file(repo, f"NOTE{i}.md", f"{i}\n", f"note {i}") for i in range(1, 2 * args.aa)]
        slowed: dict[str, list[str]] = {}
        for label, (extra, _) in slowdowns.items():
            first = commit_file(repo, "mymodels.py", MODEL.format(extra=extra), f"{label} slower")
            more = [commit_file(repo, f"S{label}{i}.md", f"{i}\n", f"note {i}") for i in range(1, args.slow)]
            slowed[label] = [first, *more]
        db = f"sqlite:///{Path(scratch) / 'r.db'}"
        commits = same + [c for cs in slowed.values() for c in cs]
        run_at_revisions(repo / "suite.yaml", commits, ["--devices", "cpu", "--rerun", "all"], db)
        plan = [("A/A", same[2 * i], same[2 * i + 1]) for i in range(args.aa)]
        plan += [(label, same[j % len(same)], c) for label, cs in slowed.items() for j, c in enumerate(cs)]
        outcomes: dict[str, list[tuple[int, str, str]]] = {}
        for kind, base, head in plan:
            code, doc = check(repo, db, base, head)
            row = next(r for r in doc["rows"] if r["metric"] == "latency_ms")  # type: ignore[union-attr, index]
            found = (code, str(row["verdict"]), str(row["change"]))
            outcomes.setdefault(kind, []).append(found)
            print(f"{kind:5} {base[:8]}→{head[:8]}: check exit {code}, latency {found[1]} ({found[2]})")
    seconds = time.perf_counter() - start
    print(f"\n{len(commits)} commits, {len(plan)} disjoint pairs, in {seconds:.0f} s")
    for kind, found in outcomes.items():
        flagged = sum(verdict == "regressed" for _, verdict, _ in found)
        label = "false-positive rate" if kind == "A/A" else f"detection rate ({kind})"
        print(f"{label}: {flagged}/{len(found)} = {flagged / len(found):.0%}")
    print(json.dumps({k: [v for _, v, _ in f] for k, f in outcomes.items()}))
    return 1 if any(code == 1 for code, _, _ in outcomes.get("A/A", [])) else 0


if __name__ == "__main__":
    raise SystemExit(main())
