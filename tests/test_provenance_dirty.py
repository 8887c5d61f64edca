"""Dirty means the code changed, not segbench's outputs: the rule, the recorded paths, the diff hash,
and regression tracking in a user's repository with the default database inside it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segbench.config import load_suite
from segbench.store import provenance
from segbench.store.db import open_db
from segbench.store.recorder import Recorder
from segbench.suite import expand
from tests.test_regress_support import commit_file, git, init_repo
from tests.test_spine import SUITE as SPINE_SUITE

REPO = Path(__file__).resolve().parents[1]


def _repo(tmp_path: Path) -> Path:
    repo = init_repo(tmp_path / "proj")
    commit_file(repo, "model.py", "WIDTH = 4\n", "model")
    return repo


def _outputs(repo: Path) -> tuple[Path, ...]:
    return provenance.run_outputs(repo / "results" / "segbench.db", repo / "results")


def test_outputs_and_untracked_non_code_leave_the_tree_clean(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "results" / "checkpoints" / "c0de").mkdir(parents=True)
    for name in ("segbench.db", "segbench.db-wal", "segbench.db-shm", "segbench.db-journal"):
        (repo / "results" / name).write_bytes(b"SQLite format 3\0")
    (repo / "results" / "checkpoints" / "c0de" / "k.pt").write_bytes(b"weights")
    (repo / "reports").mkdir()
    (repo / "reports" / "quick.html").write_text("<html></html>")
    (repo / "plot.png").write_bytes(b"\x89PNG")
    (repo / "notes.md").write_text("todo\n")
    (repo / "draft suite.yaml").write_text("name: draft\n")  # recorded as text with the run anyway
    # an output elsewhere, under an odd name, is known from the run's settings, not by its name
    (repo / "my runs [v2]").mkdir()
    (repo / "my runs [v2]" / "bench.sqlite").write_bytes(b"SQLite format 3\0")
    (repo / "my runs [v2]" / "helper.py").write_text("x = 1\n")  # code inside the workdir: an output too
    outputs = (
        *_outputs(repo),
        *provenance.run_outputs(repo / "my runs [v2]" / "bench.sqlite", repo / "my runs [v2]"),
    )

    state = provenance.git_state(repo, outputs)
    assert (state.dirty, state.dirty_paths, state.diff_hash) == (False, (), None), state
    assert state.identity() == state.commit


def test_untracked_code_and_modified_tracked_files_count_and_are_listed(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "results").mkdir()
    (repo / "results" / "segbench.db").write_bytes(b"SQLite format 3\0")
    clean = provenance.git_state(repo, _outputs(repo))
    assert clean.dirty is False

    (repo / "pkg").mkdir()
    (repo / "pkg" / "new layer.py").write_text("def layer(): ...\n")  # a suite may import it
    untracked = provenance.git_state(repo, _outputs(repo))
    assert untracked.dirty is True and untracked.dirty_paths == ("pkg/new layer.py",)
    # the hash covers the untracked file's contents: another edit is other code
    (repo / "pkg" / "new layer.py").write_text("def layer(): return 2\n")
    edited = provenance.git_state(repo, _outputs(repo))
    assert edited.diff_hash != untracked.diff_hash
    (repo / "pkg" / "new layer.py").unlink()

    (repo / "model.py").write_text("WIDTH = 8\n")
    modified = provenance.git_state(repo, _outputs(repo))
    assert modified.dirty_paths == ("model.py",)
    # segbench's outputs never change the hash: a run appending rows is still the same code
    (repo / "results" / "segbench.db").write_bytes(b"SQLite format 3\0 and more rows")
    assert provenance.git_state(repo, _outputs(repo)).diff_hash == modified.diff_hash

    # a tracked database that a run rewrites is an output as well; a staged new file is code
    git(repo, "add", "-f", "results/segbench.db")
    git(repo, "commit", "-q", "-m", "ship the db")
    (repo / "results" / "segbench.db").write_bytes(b"SQLite format 3\0 newer")
    (repo / "extra.txt").write_text("staged\n")
    git(repo, "add", "extra.txt")
    staged = provenance.git_state(repo, _outputs(repo))
    assert staged.dirty_paths == ("extra.txt", "model.py")
    # without knowing it is an output, the same database file would count
    assert "results/segbench.db" in provenance.git_state(repo).dirty_paths


TINY = textwrap.dedent(
    '''
    """A tiny segmentation net for the dirty-tree test."""

    import torch.nn.functional as F
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, num_classes, 3, stride=2, padding=1)

        def forward(self, x):
            logits = self.conv(x)
            return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


    def tiny(num_classes: int) -> Tiny:
        return Tiny(num_classes)
    '''
)
SUITE = textwrap.dedent(
    """
    name: dirty_default_db
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 4, val_length: 4}
    models:
      - name: "mymodels:tiny"
        label: tiny
    stages: [complexity, latency]
    measure: {input_size: [64, 64], warmup: 1, iters: 10, min_iters: 10, memory: false, threads: 1}
    """
)


def _segbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(cwd)]),
        "SEGBENCH_DB": "",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "segbench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_default_database_inside_the_repo_does_not_block_baselines(tmp_path: Path) -> None:
    """No .gitignore: results/ (the database, the workdir) is untracked inside the repo, and it is not code."""
    repo = init_repo(tmp_path / "proj")
    (repo / "suite.yaml").write_text(SUITE)
    git(repo, "add", "suite.yaml")
    first = commit_file(repo, "mymodels.py", TINY, "tiny model")
    ran = _segbench("run", "suite.yaml", "--devices", "cpu", cwd=repo)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (repo / "results" / "segbench.db").is_file()
    assert git(repo, "status", "--porcelain") == "?? results/"

    second = commit_file(repo, "NOTES.md", "a commit that changes no number\n", "notes")
    again = _segbench("run", "suite.yaml", "--devices", "cpu", cwd=repo)
    assert again.returncode == 0, again.stdout + again.stderr

    checked = _segbench("check", "--baseline", first[:10], "--factor", "10", cwd=repo)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"BASE {first[:10]}" in checked.stdout and second[:10] in checked.stdout
    assert "check passed" in checked.stdout

    with sqlite3.connect(repo / "results" / "segbench.db") as conn:
        assert [row[0] for row in conn.execute("select suite_dirty from runs order by id")] == [0, 0]


def test_show_lists_the_paths_that_made_a_run_dirty(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "proj")
    suite = repo / "suite.yaml"
    suite.write_text(SPINE_SUITE)
    git(repo, "add", "suite.yaml")
    commit_file(repo, "mymodels.py", TINY, "tiny model")
    (repo / "mymodels.py").write_text(TINY + "\n# tuning\n")
    (repo / "helpers.py").write_text("SCALE = 2\n")
    db_file = repo / "results" / "segbench.db"
    db = open_db(f"sqlite:///{db_file}")
    try:
        recorder = Recorder(db)
        loaded = load_suite(suite)
        recorder.start_run(
            loaded, "segbench run suite.yaml", {}, provenance.run_outputs(db_file, repo / "results")
        )
        (planned, *_) = recorder.plan(expand(loaded))
        recorder.finish("interrupted")
    finally:
        db.close()
    shown = _segbench("show", str(planned.job_id), "--db", f"sqlite:///{db_file}", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if "suite dirty" in line)
    assert "helpers.py" in line and "mymodels.py" in line and "results" not in line, shown.stdout
