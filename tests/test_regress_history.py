"""A metric across commits: ancestry order, step detection, dirty runs, the table and the PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from segbench.errors import UserError
from segbench.regress.cli import register
from segbench.regress.history import History, load_history, plot, terminal_table
from segbench.regress.rules import RuleBook
from segbench.regress.stats import Verdict
from segbench.store.db import Database, open_db
from tests.test_regress_support import FakeJob, commit_file, git, init_repo, record_run, samples

KEY = "k" * 16


@pytest.fixture()
def history_repo(tmp_path: Path) -> tuple[Path, list[str], str]:
    """Four commits on main, and one on a side branch that main's history does not contain."""
    repo = init_repo(tmp_path / "proj")
    shas = [commit_file(repo, "mymodels.py", f"VERSION = {i}\n", f"model v{i}") for i in range(1, 5)]
    git(repo, "checkout", "-q", "-b", "side", shas[1])
    side = commit_file(repo, "other.py", "X = 1\n", "side work")
    git(repo, "checkout", "-q", "main")
    return repo, shas, side


@pytest.fixture()
def db(tmp_path: Path, history_repo: tuple[Path, list[str], str]) -> Database:
    _, (c1, c2, c3, c4), side = history_repo
    database = open_db(f"sqlite:///{tmp_path / 'r.db'}")

    def job(miou: float, latency: float, hardware: str = "hw-a") -> FakeJob:
        metrics = {"mIoU": miou, "latency_ms": samples(latency)}
        rounds = {"latency_ms": [samples(latency * f) for f in (0.99, 1.01, 0.995, 1.005)]}
        return FakeJob(KEY, metrics, label="tiny", hardware=hardware, rounds=rounds)

    # recorded out of order: filled in after the fact, newest commit first
    record_run(database, c3, [job(0.650, 15.0)])
    record_run(database, c1, [job(0.700, 10.0)])
    record_run(database, c4, [job(0.651, 15.1)])
    record_run(database, c2, [job(0.701, 10.1)])
    record_run(database, c2, [job(0.702, 30.0, hardware="hw-b")])
    record_run(database, c4, [job(0.999, 15.0)], dirty=True)
    record_run(database, side, [job(0.100, 1.0)])
    return database


def load(db: Database, repo: Path, metric: str, **kw: object) -> History:
    with db.sessions() as s:
        return load_history(s, repo, metric, RuleBook(), **kw)  # type: ignore[arg-type]


def test_points_follow_git_ancestry_not_recording_order(
    history_repo: tuple[Path, list[str], str], db: Database
) -> None:
    repo, shas, side = history_repo
    found = load(db, repo, "miou")
    assert found.metric == "mIoU"
    assert [c.sha for c in found.commits] == shas  # the side branch is not in main's history
    (line,) = found.lines
    # accuracy is hardware-independent: at c2 the latest run (on hw-b) counts
    assert [p.value for p in line.points] == pytest.approx([0.700, 0.702, 0.650, 0.651])
    assert found.skipped_dirty == 1


def test_step_is_marked_at_the_commit_that_made_it(
    history_repo: tuple[Path, list[str], str], db: Database
) -> None:
    repo, (c1, c2, c3, c4), _ = history_repo
    (line,) = load(db, repo, "mIoU").lines
    (step,) = line.steps()
    assert step.commit.sha == c3 and step.step is not None and step.step.verdict is Verdict.regressed
    assert [p.step.verdict if p.step else None for p in line.points] == [
        None,
        Verdict.unchanged,
        Verdict.regressed,
        Verdict.unchanged,
    ]


def test_timings_have_one_line_per_machine_and_use_the_samples(
    history_repo: tuple[Path, list[str], str], db: Database
) -> None:
    repo, (c1, c2, c3, _), _ = history_repo
    found = load(db, repo, "latency")
    by_hw = {line.hardware: line for line in found.lines}
    assert set(by_hw) == {"hw-a", "hw-b"}
    assert by_hw["hw-a"].label == "tiny · CPU hw-a"
    (step,) = by_hw["hw-a"].steps()
    assert step.commit.sha == c3 and step.step is not None
    assert step.step.verdict is Verdict.regressed and "rounds 5+5" in step.step.note
    assert [p.commit.sha for p in by_hw["hw-b"].points] == [c2]


def test_every_run_at_a_commit_is_kept_and_pooled_as_rounds(
    history_repo: tuple[Path, list[str], str], db: Database, tmp_path: Path
) -> None:
    repo, (c1, c2, c3, c4), _ = history_repo
    again = FakeJob(KEY, {"mIoU": 0.651, "latency_ms": samples(15.2)}, label="tiny", hardware="hw-a")
    record_run(db, c4, [again])
    found = load(db, repo, "latency")
    line = next(line for line in found.lines if line.hardware == "hw-a")
    last = line.points[-1]
    assert last.commit.sha == c4 and [r.run_id for r in last.runs] == [8, 3]  # latest run first
    assert last.rounds is not None and len(last.rounds) == 6  # 1 round of run 8 + 5 of run 3
    assert last.runs[1].round_medians and len(last.runs[1].round_medians) == 5
    assert last.step is not None and last.step.verdict is Verdict.unchanged
    table = Console(width=200, record=True)
    table.print(terminal_table(found))
    assert "(2 runs, 6 rounds)" in table.export_text()
    path = plot(found, tmp_path / "h.png")
    assert Image.open(path).size[0] > 0


def test_dirty_results_only_when_asked(history_repo: tuple[Path, list[str], str], db: Database) -> None:
    repo, shas, _ = history_repo
    (line,) = load(db, repo, "mIoU", include_dirty=True).lines
    last = line.points[-1]
    assert last.dirty and last.value == pytest.approx(0.999) and last.is_step  # the dirty run is the latest


def test_since_and_model_filters(history_repo: tuple[Path, list[str], str], db: Database) -> None:
    repo, (c1, c2, c3, c4), _ = history_repo
    assert [c.sha for c in load(db, repo, "mIoU", since=c2).commits] == [c2, c3, c4]
    assert load(db, repo, "mIoU", model="tiny").lines
    with pytest.raises(UserError, match="did you mean 'tiny'"):
        load(db, repo, "mIoU", model="tiyn")
    with pytest.raises(UserError, match="not an ancestor"):
        load(db, repo, "mIoU", since="side")
    with pytest.raises(UserError, match="did you mean 'mIoU'"):
        load(db, repo, "mIoUx")


def test_table_and_png(history_repo: tuple[Path, list[str], str], db: Database, tmp_path: Path) -> None:
    repo, (c1, c2, c3, c4), _ = history_repo
    found = load(db, repo, "mIoU")
    console = Console(record=True, width=160)
    console.print(terminal_table(found))
    text = console.export_text()
    assert [line.split()[1] for line in text.splitlines() if line.startswith("│ ")] == [
        c[:10] for c in (c1, c2, c3, c4)
    ]
    assert "▼ 65.00" in text and "70.00" in text
    assert "1 dirty run(s) left out" in " ".join(text.split())  # the caption wraps
    path = plot(found, tmp_path / "plots" / "miou.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300


def test_history_command(history_repo: tuple[Path, list[str], str], db: Database, tmp_path: Path) -> None:
    repo, (_, _, c3, _), _ = history_repo
    app = typer.Typer()
    register(app)
    png = tmp_path / "h.png"
    result = CliRunner().invoke(
        app, ["history", "--metric", "mIoU", "--db", db.url, "--repo", str(repo), "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert f"regressed at {c3[:10]} (model v3): tiny → 65.00" in result.output
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    result = CliRunner().invoke(
        app, ["history", "--metric", "mIoU", "--db", db.url, "--repo", str(repo), "--suite", "x"]
    )
    assert isinstance(result.exception, UserError) and "no results of suite 'x'" in str(result.exception)


def test_history_pairs_lockstep_sweeps_as_check_does(
    history_repo: tuple[Path, list[str], str], tmp_path: Path
) -> None:
    """Two commits measured by one ``run --at``: the step is decided on the paired sweeps, as ``check`` decides."""
    from segbench.store.rounds import add_timing_round

    repo, (c1, c2, _, _), _ = history_repo
    database = open_db(f"sqlite:///{tmp_path / 'lockstep.db'}")
    spells = [1.9, 1.9, 1.0, 1.9, 1.9, 1.9, 1.0]  # the machine's speed in each sweep (as CI saw it)
    try:
        ids = {}
        for commit, level in ((c1, 1.0), (c2, 1.8)):
            (ids[commit],) = record_run(
                database, commit, [FakeJob(KEY, {"latency_ms": samples(1.9 * level)}, hardware="hw-a")]
            )
        for i, spell in enumerate(spells):
            for commit, level in ((c1, 1.0), (c2, 1.8)):
                bursts = [level * spell * (1 + 0.02 * (b % 3)) for b in range(10)]
                add_timing_round(
                    database, ids[commit], "latency_ms", bursts[5], bursts, 1, sweep=f"s{i}", burst=1
                )
        (line,) = load(database, repo, "latency").lines
        _, second = line.points
        assert second.step is not None and second.step.verdict is Verdict.regressed, second.step
        assert "lockstep 7 sweeps" in second.step.note
    finally:
        database.close()
