"""A/A: commits of identical model code never regress through the real ``run --at`` and ``check``.

A temporary git repository holds a plain model (real convolutions, one
thread, no deliberate stalls: its timing is as noisy as the shared machine
makes it) and a timing-only suite. Four commits carry the identical model
(each adds an unrelated file, the second a ``.gitignore``), a fifth makes it
really 2× slower (the body runs twice). One ``run --at`` measures all five
into one database, rounds 1–7 in lockstep sweeps (a fresh process per commit,
timing bursts in turn); then
``segbench check`` judges the six A/A pairs among the four identical commits
(it must pass every time) and the slow commit against each of them (it must
fail every time, on latency). Parameters, FLOPs and memory are identical in every A/A pair
by construction. Kept small: a 64×64 input, 8 rounds of ≤ 20 iterations.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
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
    """A plain segmentation net; ``passes`` runs its feature layers that many times."""

    import torch.nn.functional as F
    from torch import nn


    class Plain(nn.Module):
        def __init__(self, num_classes: int, width: int = 16, passes: int = {passes}) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, width, 3, padding=1)
            self.body = nn.Sequential(
                *[m for _ in range(3) for m in (nn.Conv2d(width, width, 3, padding=1), nn.ReLU())]
            )
            self.classifier = nn.Conv2d(width, num_classes, 1)
            self.passes = passes

        def forward(self, x):
            y = F.relu(self.stem(x))
            for _ in range(self.passes):
                y = self.body(y)
            return {{"out": self.classifier(y)}}


    def plain(num_classes: int) -> Plain:
        return Plain(num_classes)
    '''
)

SUITE = textwrap.dedent(
    """
    name: aa
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 4, val_length: 2}
    models:
      - name: "mymodels:plain"
        label: plain
    stages: [complexity, latency]
    measure: {input_size: [64, 64], warmup: 3, iters: 20, min_iters: 10, memory: true, threads: 1, rounds: 8}
    """
)


def make_project(root: Path, identical: int, slower: int = 0) -> tuple[Path, list[str], list[str]]:
    """A repository with ``identical`` commits of the same model, then ``slower`` commits of the 2× one."""
    repo = init_repo(root)
    (repo / "suite.yaml").write_text(SUITE)
    git(repo, "add", "suite.yaml")
    same = [commit_file(repo, "mymodels.py", MODEL.format(passes=1), "a plain model")]
    same.append(commit_file(repo, ".gitignore", "results/\n__pycache__/\n", "ignore results"))
    for i in range(2, identical):
        same.append(commit_file(repo, f"NOTES{i}.md", f"note {i}\n", f"notes {i}"))
    slow = [commit_file(repo, "mymodels.py", MODEL.format(passes=2), "every layer twice")]
    for i in range(1, slower):
        slow.append(commit_file(repo, f"SLOW{i}.md", f"slow {i}\n", f"slow notes {i}"))
    return repo, same[:identical], slow[:slower]


def check(repo: Path, db: str, baseline: str, head: str) -> tuple[int, dict[str, object]]:
    """``segbench check`` as a user runs it: its exit code, and the JSON verdicts."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEGBENCH_DB": "", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "segbench", "check", "--baseline", baseline, "--head", head, "--db", db]
        + ["-f", "json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def verdicts(doc: dict[str, object]) -> dict[str, str]:
    return {row["metric"]: row["verdict"] for row in doc["rows"]}  # type: ignore[index, union-attr]


@pytest.mark.slow
def test_identical_code_never_regresses_and_a_2x_slowdown_always_does(tmp_path: Path) -> None:
    repo, same, (slow,) = make_project(tmp_path / "proj", identical=4, slower=1)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    run_at_revisions(repo / "suite.yaml", [*same, slow], ["--devices", "cpu"], db)

    for base, head in itertools.combinations(same, 2):  # six A/A pairs among four identical commits
        code, doc = check(repo, db, base, head)
        found = verdicts(doc)
        assert code == 0, (base[:8], head[:8], doc)
        for metric in ("params", "macs", "peak_memory_bytes", "train_peak_memory_bytes"):
            assert found[metric] == "unchanged", (metric, doc)
        latency = next(r for r in doc["rows"] if r["metric"] == "latency_ms")  # type: ignore[union-attr, index]
        assert "lockstep 7 sweeps" in latency["note"], latency  # decided on the paired sweeps, and says so
    for base in same:  # the 2x slower commit against each of the four identical ones
        code, doc = check(repo, db, base, slow)
        found = verdicts(doc)
        assert code == 1, (base[:8], doc)
        assert found["latency_ms"] == "regressed" and found["throughput_ips"] == "regressed", doc
        latency = next(r for r in doc["rows"] if r["metric"] == "latency_ms")  # type: ignore[union-attr, index]
        assert "lockstep 7 sweeps" in latency["note"], latency
        assert found["params"] == "unchanged"  # the same layers, run twice


def test_rounds_are_evidence_not_identity() -> None:
    """``measure.rounds`` leaves the job key alone: accuracy results stay cached and comparable."""
    from dataclasses import replace

    from segbench.jobs import JobSpec

    base = JobSpec(
        suite="aa",
        model="mymodels:plain",
        model_label="plain",
        model_options={},
        dataset="diagnostic",
        dataset_label="diagnostic",
        dataset_root=None,
        dataset_options={},
        train={},
        eval={},
        measure={"input_size": [64, 64], "rounds": None},
        stages=("complexity", "latency"),
        seed=0,
    )
    more = replace(base, measure={**base.measure, "rounds": 7})
    assert more.job_key == base.job_key and more.to_dict()["measure"]["rounds"] == 7
    other = replace(base, measure={**base.measure, "input_size": [32, 32]})
    assert other.job_key != base.job_key


@pytest.mark.slow
def test_a_plain_run_records_its_rounds_in_fresh_processes(tmp_path: Path) -> None:
    repo, _, _ = make_project(tmp_path / "proj", identical=1)
    (repo / "suite.yaml").write_text(re.sub(r", rounds: \d+", "", SUITE))  # the suite says nothing
    db = tmp_path / "r.db"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEGBENCH_DB": "", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "segbench", "run", "suite.yaml", "--db", f"sqlite:///{db}", "--devices"]
    proc = subprocess.run(
        [*command, "cpu", "--rounds", "3"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT round, pid, value FROM timing_rounds ORDER BY round").fetchall()
        (driver,) = con.execute("SELECT driver_pid FROM runs").fetchone()
    assert [r for r, _, _ in rows] == [1, 2]  # round 0 is the run's own measurement
    pids = {pid for _, pid, _ in rows}
    assert len(pids) == 2 and driver not in pids and all(v > 0 for _, _, v in rows)
