"""Lockstep sweeps with real worker processes: what is recorded, and a worker that dies costs only its own round."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from segbench.regress.retime import MIN_BURSTS, ROUNDS_BY_DRIVER, Member, lockstep_sweep
from tests.test_aa import SUITE, make_project

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_dead_worker_costs_its_own_round_and_the_others_are_recorded_with_their_sweep(
    tmp_path: Path,
) -> None:
    repo, _, _ = make_project(tmp_path / "proj", identical=1)
    (repo / "suite.yaml").write_text(re.sub(r", rounds: \d+", ", rounds: 2", SUITE))
    db = tmp_path / "r.db"
    url = f"sqlite:///{db}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEGBENCH_DB": "", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "segbench", "run", "suite.yaml", "--db", url, "--devices", "cpu"]
    only_round_0 = {**env, ROUNDS_BY_DRIVER: "1"}  # as under run --at: this test drives the sweep
    proc = subprocess.run(command, cwd=repo, env=only_round_0, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_id,) = sqlite3.connect(db).execute("SELECT id FROM runs").fetchone()

    # the same recorded job, but a checkout where its model no longer imports: that worker dies
    # when asked to build it; the next worker with the same job then times it (once)
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    (broken / "mymodels.py").write_text("raise RuntimeError('broken at this revision')\n")
    said: list[str] = []
    members = [Member(run_id, "broken", broken, env), Member(run_id, "good", repo, env)]
    problems = lockstep_sweep(url, members, 3, said.append)

    assert [(m.name, p) for m, p in problems] == [
        ("broken", "its timing round failed (exit 1): RuntimeError: broken at this revision")
    ]
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT round, sweep, burst, samples, pid, value FROM timing_rounds").fetchall()
    ((number, sweep, burst, samples, pid, value),) = rows
    bursts = max(MIN_BURSTS, -(-20 // burst))  # at least the suite's 20 iterations
    assert number == 1 and len(sweep) == 32 and 1 <= burst <= 5 and len(json.loads(samples)) == burst * bursts
    assert pid != os.getpid() and value > 0
    assert any(line.startswith("  plain diagnostic: good round 1 ") for line in said), said
