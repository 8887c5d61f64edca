"""Regression tracking end to end: a user's repository, two commits of a model, real runs, `segbench check`.

A temporary git repository holds an import-path model and a suite (timed with
one thread: on a shared CPU, a second intra-op thread waits for a core and adds
tens of milliseconds at random). The second
commit makes the model slower (two more convolutions and a longer deliberate
stall, standing in for expensive compute and stable on a busy CPU) and less
accurate (it ignores its input). The suite runs at both commits through
temporary worktrees, and the command line must say what regressed; the accuracy
drop is confirmed by the paired bootstrap over the shared validation images,
and a re-run of the first commit (identical predictions) is unchanged.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segbench.regress.at import run_at_revisions
from tests.test_regress_support import commit_file, git, init_repo

REPO = Path(__file__).resolve().parents[1]

MODEL = textwrap.dedent(
    '''
    """{doc}"""

    import time

    import torch.nn.functional as F
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self, num_classes: int, width: int = 16) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, stride=2, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, stride=2, padding=1),
                nn.ReLU(inplace=True),{extra}
            )
            self.classifier = nn.Conv2d(width, num_classes, 1)

        def forward(self, x):
            if not self.training:
                time.sleep({stall})  # stands in for compute; a sleep is stable on a shared CPU
            logits = self.classifier(self.features(x{blind}))
            return {{"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}}


    def tiny(num_classes: int) -> Tiny:
        return Tiny(num_classes)
    '''
)
V1 = MODEL.format(doc="v1: a tiny segmentation net.", extra="", stall=0.004, blind="")
V2 = MODEL.format(
    doc="v2: two more convolutions, slower, and blind to its input.",
    extra="\n" + "            nn.Conv2d(width, width, 3, padding=1),\n            nn.ReLU(inplace=True)," * 2,
    stall=0.012,
    blind=" * 0",
)

SUITE = textwrap.dedent(
    """
    name: regress_e2e
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 32, val_length: 8}
    models:
      - name: "mymodels:tiny"
        label: tiny
    stages: [complexity, latency, train, eval]
    train: {iterations: 20, batch_size: 4, aux_weight: null, lr: 0.05}
    eval: {batch_size: 4}
    measure: {input_size: [64, 64], warmup: 1, iters: 20, min_iters: 10, memory: false, threads: 1}
    """
)


def segbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEGBENCH_DB": "", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "segbench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_check_finds_the_regression_rerun_is_unchanged_dirty_is_no_baseline(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "proj")
    (repo / ".gitignore").write_text("results/\n__pycache__/\n")
    git(repo, "add", ".gitignore")
    (repo / "suite.yaml").write_text(SUITE)
    git(repo, "add", "suite.yaml")
    first = commit_file(repo, "mymodels.py", V1, "tiny model")
    second = commit_file(repo, "mymodels.py", V2, "deeper model")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    where = ("--db", db, "--repo", str(repo))

    run_first, run_second = run_at_revisions(repo / "suite.yaml", [first, "main"], ["--devices", "cpu"], db)
    assert git(repo, "worktree", "list").count("\n") == 0  # the temporary worktrees are gone

    # HEAD (the second commit) against the first: slower, bigger and less accurate
    checked = segbench("check", "--baseline", first[:10], *where, cwd=repo)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    regressed = checked.stdout.split("REGRESSED:")[1]
    for metric in ("mIoU", "pixel_acc", "params", "macs", "latency_ms", "throughput_ips"):
        assert f"tiny diagnostic · {metric} " in regressed, (metric, checked.stdout)
    assert f"BASE {first[:10]} · run {run_first}" in checked.stdout
    # accuracy was decided by the paired bootstrap over the 8 shared validation images, not the threshold alone
    assert re.search(r"tiny diagnostic · mIoU -\d+\.\d+ pts \(p = 0\.000\d+\)", regressed), checked.stdout
    first_vs_second = segbench("compare", first[:10], "HEAD", *where, "-f", "json", "-m", "mIoU", cwd=repo)
    (miou_row,) = json.loads(first_vs_second.stdout)["rows"]
    assert miou_row["verdict"] == "regressed" and miou_row["p_value"] < 0.05
    assert miou_row["note"].startswith("paired bootstrap over 8 images"), miou_row
    assert f"HEAD HEAD ({second[:10]}) · run {run_second}" in checked.stdout

    # the first commit measured again (not reused) compares as unchanged with it. Two processes
    # minutes apart on a shared CPU drift in speed, so timings get a wide factor; the v1 → v2
    # slowdown above is ~3x, far beyond it.
    (run_again,) = run_at_revisions(repo / "suite.yaml", [first], ["--devices", "cpu", "--rerun", "all"], db)
    compared = segbench(
        "compare", str(run_first), str(run_again), *where, "--factor", "0.5", "-f", "json", cwd=repo
    )
    assert compared.returncode == 0, compared.stderr
    rows = json.loads(compared.stdout)["rows"]
    assert {r["metric"] for r in rows} >= {"mIoU", "params", "latency_ms"}
    assert not [r for r in rows if r["verdict"] in ("regressed", "improved")], rows
    assert all(r["verdict"] == "unchanged" for r in rows if r["kind"] in ("accuracy", "complexity")), rows
    rechecked = segbench(
        "check", "--baseline", str(run_first), "--head", str(run_again), *where, "--factor", "0.5", cwd=repo
    )
    assert rechecked.returncode == 0 and "check passed" in rechecked.stdout, rechecked.stdout

    # uncommitted edits on top of the second commit: v1 again, measured on a dirty tree
    (repo / "mymodels.py").write_text(V1)
    dirty_run = segbench("run", "suite.yaml", "--db", db, "--devices", "cpu", cwd=repo)
    assert dirty_run.returncode == 0, dirty_run.stderr
    run_dirty = int(re.search(r"^run (\d+):", dirty_run.stdout, re.M).group(1))  # type: ignore[union-attr]
    # as a baseline, HEAD's commit means its clean run: the dirty one is left out, so v1's numbers
    # show as improvements over the clean v2 ones instead of comparing the dirty run with itself
    against = segbench("compare", "HEAD", str(run_dirty), *where, "-f", "json", "-m", "mIoU", cwd=repo)
    doc = json.loads(against.stdout)
    assert doc["base"]["runs"] == [run_second] and doc["base"]["skipped_dirty_runs"] == [run_dirty]
    assert doc["head"]["dirty"] is True
    assert [r["verdict"] for r in doc["rows"]] == ["improved"]
    refused = segbench("check", "--baseline", str(run_dirty), *where, cwd=repo)
    assert refused.returncode == 2 and "dirty tree" in refused.stderr and "--allow-dirty" in refused.stderr
    allowed = segbench(
        "check", "--baseline", str(run_dirty), "--head", str(run_second), "--allow-dirty", *where, cwd=repo
    )
    assert allowed.returncode == 1 and f"BASE run {run_dirty} at {second[:10]} · DIRTY tree" in allowed.stdout
