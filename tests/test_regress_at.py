"""``run_at_revisions``: one temporary worktree per revision, its own models, nothing left behind."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from segbench.errors import UserError
from segbench.regress.at import absolute_db_url, run_at_revisions, split_revisions
from tests.test_regress_support import commit_file, git, init_repo

MODEL = textwrap.dedent(
    """
    from torch import nn


    def tiny(num_classes: int) -> nn.Module:
        return nn.Conv2d(3, num_classes, {kernel})
    """
)
SUITE = textwrap.dedent(
    """
    name: at_test
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 4, val_length: 2}
    models:
      - name: "mymodels:tiny"
    stages: [complexity]
    measure: {input_size: [64, 64]}
    """
)


@pytest.fixture()
def project(tmp_path: Path) -> tuple[Path, str, str]:
    """A suite and a model whose parameter count differs between two commits (no .gitignore)."""
    repo = init_repo(tmp_path / "proj")
    (repo / "bench").mkdir()
    commit_file(repo, "bench/suite.yaml", SUITE, "suite")
    first = commit_file(repo, "mymodels.py", MODEL.format(kernel=1), "1x1 model")
    second = commit_file(repo, "mymodels.py", MODEL.format(kernel=3), "3x3 model")
    return repo, first, second


def worktrees(repo: Path) -> int:
    return len(git(repo, "worktree", "list").splitlines())


def test_split_revisions() -> None:
    assert split_revisions("v1.0, main,HEAD~2") == ["v1.0", "main", "HEAD~2"]
    with pytest.raises(UserError, match="comma-separated revisions"):
        split_revisions("v1,,main")


def test_absolute_db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_db_url("sqlite:///results/x.db") == f"sqlite:///{tmp_path}/results/x.db"
    assert absolute_db_url("postgresql://u:secret@host/db") == "postgresql://u:secret@host/db"
    with pytest.raises(UserError, match="in-memory"):
        absolute_db_url("sqlite://")
    assert absolute_db_url("results.db") == f"sqlite:///{tmp_path}/results.db"
    with pytest.raises(UserError, match="not a database URL"):
        absolute_db_url("sqlite:results.db")


def test_bad_revisions_fail_before_anything_runs(project: tuple[Path, str, str], tmp_path: Path) -> None:
    repo, first, _ = project
    db = f"sqlite:///{tmp_path / 'r.db'}"
    with pytest.raises(UserError, match="--at 'mian': not a revision .*did you mean 'main'"):
        run_at_revisions(repo / "bench" / "suite.yaml", [first, "mian"], [], db)
    assert not (tmp_path / "r.db").exists() and worktrees(repo) == 1
    outside = tmp_path / "loose.yaml"
    outside.write_text(SUITE)
    with pytest.raises(UserError, match="not inside a git repository"):
        run_at_revisions(outside, ["HEAD"], [], db)
    with pytest.raises(UserError, match="no such suite file"):
        run_at_revisions(repo / "nope.yaml", ["HEAD"], [], db)


def test_suite_missing_at_a_revision(project: tuple[Path, str, str], tmp_path: Path) -> None:
    repo, first, _ = project
    git(repo, "mv", "bench/suite.yaml", "suite.yaml")
    git(repo, "commit", "-q", "-m", "move the suite")
    with pytest.raises(UserError, match=rf"the suite suite.yaml does not exist at {first[:10]}"):
        run_at_revisions(repo / "suite.yaml", [first], [], f"sqlite:///{tmp_path / 'r.db'}")
    assert worktrees(repo) == 1


def test_a_run_that_records_nothing_is_an_error(project: tuple[Path, str, str], tmp_path: Path) -> None:
    repo, first, _ = project
    with pytest.raises(UserError, match="without recording a run"):
        run_at_revisions(
            repo / "bench" / "suite.yaml", [first], ["--dry-run"], f"sqlite:///{tmp_path / 'r.db'}"
        )
    assert worktrees(repo) == 1


@pytest.mark.slow
def test_each_revision_runs_its_own_models(
    project: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, first, second = project
    monkeypatch.chdir(tmp_path)  # a relative database path is the caller's, not the worktree's
    ids = run_at_revisions(
        repo / "bench" / "suite.yaml", [first, "HEAD"], ["--devices", "cpu"], "sqlite:///r.db"
    )
    assert worktrees(repo) == 1
    with sqlite3.connect(tmp_path / "r.db") as conn:
        runs = conn.execute("select id, suite_commit, suite_dirty from runs order by id").fetchall()
        params = dict(
            conn.execute(
                "select jobs.run_id, metrics.value from metrics join jobs on jobs.id = metrics.job_id "
                "where metrics.name = 'params'"
            ).fetchall()
        )
    assert runs == [(ids[0], first, 0), (ids[1], second, 0)]  # clean worktrees: no bytecode left in them
    # 7 classes: a 1x1 conv has 3*7 + 7 parameters, a 3x3 one 9*3*7 + 7
    assert params == {ids[0]: 28.0, ids[1]: 196.0}
