"""BASE vs HEAD on real databases and a real git repository: matching, verdicts, dirty trees, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from segbench.errors import UserError
from segbench.evidence import Evidence
from segbench.regress.cli import register
from segbench.regress.compare import compare, markdown
from segbench.regress.rules import RuleBook, parse_threshold_specs
from segbench.regress.snapshot import Snapshot, load_snapshot, resolve_target
from segbench.regress.stats import Verdict
from segbench.store.db import Database, open_db
from tests.test_regress_support import FakeJob, commit_file, git, init_repo, record_run, samples


@pytest.fixture()
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository with two commits; the first is tagged v1."""
    path = init_repo(tmp_path / "proj")
    first = commit_file(path, "mymodels.py", "WIDTH = 8\n", "v1 model")
    git(path, "tag", "v1")
    second = commit_file(path, "mymodels.py", "WIDTH = 1\n", "v2 model")
    return path, first, second


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    return open_db(f"sqlite:///{tmp_path / 'r.db'}")


def snap(db: Database, text: str, repo: Path | None, **kw: object) -> Snapshot:
    with db.sessions() as s:
        return load_snapshot(s, resolve_target(s, text, repo), **kw)  # type: ignore[arg-type]


def verdicts(rows) -> dict[tuple[str, str], Verdict]:  # type: ignore[no-untyped-def]
    return {(r.label, r.metric): r.verdict for r in rows}


def job_a(miou: float, params: float, latency: float, **kw: object) -> FakeJob:
    """A job whose latency was timed in five rounds (fresh processes) that agree within ±1 %."""
    metrics = {"mIoU": miou, "params": params, "latency_ms": samples(latency), "latency_cv": 0.01}
    rounds = {"latency_ms": [samples(latency * f) for f in (0.99, 1.01, 0.995, 1.005)]}
    return FakeJob("a" * 16, metrics, label="tiny w8", rounds=rounds, **kw)  # type: ignore[arg-type]


def job_b(miou: float, **kw: object) -> FakeJob:
    return FakeJob("b" * 16, {"mIoU": miou, "params": 500.0}, label="tiny w4", **kw)  # type: ignore[arg-type]


def test_each_metric_gets_its_verdict(repo: tuple[Path, str, str], db: Database) -> None:
    path, first, second = repo
    record_run(db, first, [job_a(0.70, 1000, 10.0), job_b(0.50)])
    record_run(
        db, second, [job_a(0.65, 1200, 10.05), job_b(0.503), FakeJob("c" * 16, {"mIoU": 0.1}, label="new")]
    )
    result = compare(snap(db, "v1", path, allow_dirty=False), snap(db, "HEAD", path), RuleBook())
    assert verdicts(result.rows) == {
        ("tiny w8", "mIoU"): Verdict.regressed,  # -5 points
        ("tiny w8", "params"): Verdict.regressed,  # exact
        ("tiny w8", "latency_ms"): Verdict.unchanged,  # +0.5 %: within the 5 % factor
        ("tiny w4", "mIoU"): Verdict.unchanged,  # +0.3 points
        ("tiny w4", "params"): Verdict.unchanged,
    }  # latency_cv is recorded but is not a benchmark number
    assert result.only_head == ("new",) and result.only_base == ()
    assert {(r.label, r.metric) for r in result.regressions()} == {("tiny w8", "mIoU"), ("tiny w8", "params")}
    assert result.regressions(gating={"latency_ms"}) == []
    text = markdown(result)
    assert "| tiny w8 | mIoU (%) | 70.00 | 65.00 | -5.00 pts |" in text
    assert "**2 regressed, 3 unchanged**" in text
    assert "Only in HEAD (not compared): new." in text
    assert "timing: latency_ms ±5% with its whole 95% interval beyond it: over ≥ 6 shared lockstep" in text
    assert "rounds 5+5; no history" in text
    changed = markdown(result, only_changed=True)
    assert "| tiny w8 | mIoU (%) |" in changed and "| tiny w8 | params (M) |" in changed
    assert "| tiny w8 | latency (ms) |" not in changed and "| tiny w4 |" not in changed


def counts(tp: list[int]) -> np.ndarray:
    """Per-image evidence of one class: ``tp`` of 100 labelled pixels per image, IoU = tp / 100."""
    n = len(tp)
    return np.stack([np.array(tp), np.full(n, 100), np.array(tp)], axis=1)[:, :, None]


def evidence_job(key: str, tp: list[int], **kw: object) -> FakeJob:
    """A job whose mIoU is the one its per-image evidence gives (as the pipeline checks)."""
    array = counts(tp)
    miou = Evidence("diagnostic", "val", "x", {"counts": array}).recompute("mIoU")
    return FakeJob(key, {"mIoU": miou}, label=f"job {key[0]}", evidence=array, **kw)  # type: ignore[arg-type]


def test_accuracy_with_evidence_needs_a_significant_paired_difference(
    repo: tuple[Path, str, str], db: Database
) -> None:
    path, first, second = repo
    base = [50] * 20
    record_run(
        db,
        first,
        [
            evidence_job("a" * 16, base),
            evidence_job("b" * 16, base),
            FakeJob("c" * 16, {"mIoU": 0.50}, label="job c"),  # recorded before evidence was kept
            evidence_job("d" * 16, base),
        ],
    )
    record_run(
        db,
        second,
        [
            evidence_job("a" * 16, [45] * 20),  # 5 points worse on every image: real
            evidence_job("b" * 16, [70, 28] * 10),  # 1 point worse on average, ±21 per image: noise
            evidence_job("c" * 16, [45] * 20),
            evidence_job("d" * 16, [45] * 20, images="other val images"),
        ],
    )
    result = compare(snap(db, "v1", path), snap(db, "HEAD", path), RuleBook(), metrics=["mIoU"])
    rows = {r.label: r for r in result.rows}
    assert rows["job a"].verdict is Verdict.regressed
    assert rows["job a"].decision.p_value == pytest.approx(2 / 10_001)
    assert "paired bootstrap over 20 images" in rows["job a"].decision.note
    assert rows["job b"].verdict is Verdict.noisy and rows["job b"].decision.p_value > 0.05
    assert rows["job b"].decision.note.startswith("not significant (p = ")
    assert rows["job c"].verdict is Verdict.regressed and rows["job c"].decision.p_value is None
    assert rows["job c"].decision.note == "no per-image evidence in BASE (older result): threshold only"
    assert rows["job d"].verdict is Verdict.regressed
    assert rows["job d"].decision.note == "evaluated on different images: threshold only"
    text = markdown(result)
    assert "mIoU ±0.5 pts and paired bootstrap p < 0.05 where both sides have per-image evidence" in text
    # the threshold stays the minimum effect that matters: a significant 5-point drop within it is unchanged
    lenient = RuleBook().with_specs(parse_threshold_specs("mIoU:-6", "--fail-on"), ["mIoU"], "--fail-on")
    assert {
        r.verdict for r in compare(snap(db, "v1", path), snap(db, "HEAD", path), lenient, ["mIoU"]).rows
    } == {Verdict.unchanged}


def test_latest_done_result_wins_following_cached_links(repo: tuple[Path, str, str], db: Database) -> None:
    path, first, _ = repo
    record_run(db, first, [job_b(0.40)])
    (fresh,) = record_run(db, first, [job_b(0.60)])  # --rerun all at the same commit
    record_run(db, first, [FakeJob("b" * 16, status="cached", source_job_id=fresh, label="tiny w4")])
    record_run(db, first, [job_b(0.10, status="failed")])  # a later failure never replaces a result
    base = snap(db, first, path)
    assert base.latest("b" * 16).metrics["mIoU"].value == pytest.approx(0.60)
    assert base.latest("b" * 16).job_id == fresh
    assert [r.id for r in base.runs] == [1, 2, 3, 4]


def test_dirty_runs_are_never_a_baseline_unless_asked(repo: tuple[Path, str, str], db: Database) -> None:
    path, first, second = repo
    record_run(db, first, [job_b(0.50)])
    record_run(db, first, [job_b(0.90)], dirty=True)  # later, but on uncommitted code
    record_run(db, second, [job_b(0.30)], dirty=True)
    base = snap(db, "v1", path, allow_dirty=False)
    assert base.latest("b" * 16).metrics["mIoU"].value == pytest.approx(0.50)
    assert base.skipped_dirty == (2,) and not base.dirty
    with pytest.raises(UserError, match=r"dirty tree.*--allow-dirty"):
        snap(db, "main", path, allow_dirty=False, role="BASE")
    with pytest.raises(UserError, match="dirty tree"):
        snap(db, "3", path, allow_dirty=False, role="BASE")  # a run id is no way around it
    head = snap(db, "main", path, allow_dirty=True)
    assert head.dirty
    text = markdown(compare(base, head, RuleBook()))
    assert "HEAD includes results measured on a dirty (uncommitted) tree" in text
    assert "BASE: run(s) 2 measured on a dirty tree were left out" in text


def test_suite_repository_decides_dirtiness_not_segbench(repo: tuple[Path, str, str], db: Database) -> None:
    path, first, _ = repo
    # segbench itself was a working copy with edits; the user's repository was clean
    record_run(db, first, [job_b(0.50)], segbench_dirty=True)
    base = snap(db, "v1", path, allow_dirty=False)
    assert not base.dirty and base.runs[0].other_dirty


def test_timings_compare_only_on_the_same_hardware(repo: tuple[Path, str, str], db: Database) -> None:
    path, first, second = repo
    record_run(db, first, [job_a(0.7, 1000, 10.0, hardware="hw-a")])
    record_run(db, first, [job_a(0.7, 1000, 20.0, hardware="hw-b")])
    record_run(db, second, [job_a(0.7, 1000, 30.0, hardware="hw-c")])
    cross = compare(snap(db, first, path), snap(db, second, path), RuleBook())
    rows = {r.metric: r for r in cross.rows}
    assert rows["latency_ms"].verdict is Verdict.incomparable
    assert "BASE ran on CPU hw-b [hw-b], HEAD on CPU hw-c [hw-c]" in rows["latency_ms"].decision.note
    assert rows["mIoU"].verdict is Verdict.unchanged  # accuracy does not depend on the machine
    record_run(db, second, [job_a(0.7, 1000, 11.0, hardware="hw-a")])
    same = compare(snap(db, first, path), snap(db, second, path), RuleBook())
    timed = [r for r in same.rows if r.metric == "latency_ms"]
    assert [(r.hardware, r.verdict) for r in timed] == [("hw-a", Verdict.regressed)]  # +10 % on hw-a


def test_a_tail_percentile_or_a_single_shot_timing_is_at_most_noisy(
    repo: tuple[Path, str, str], db: Database
) -> None:
    path, first, second = repo
    # three slow iterations out of twenty move the p90 by 60 %; the bulk of the samples barely moves
    record_run(
        db,
        first,
        [FakeJob("t" * 16, {"latency_ms": samples(4.5), "latency_p90_ms": 4.6, "train_seconds": 1.0})],
    )
    slow = samples(4.5)[:17] + [7.4, 7.5, 7.6]
    record_run(
        db, second, [FakeJob("t" * 16, {"latency_ms": slow, "latency_p90_ms": 7.4, "train_seconds": 2.0})]
    )
    rows = {r.metric: r for r in compare(snap(db, "v1", path), snap(db, "main", path), RuleBook()).rows}
    assert rows["latency_ms"].verdict is Verdict.unchanged
    assert rows["latency_p90_ms"].verdict is Verdict.noisy
    assert rows["train_seconds"].verdict is Verdict.noisy
    assert "no repeated samples" in rows["train_seconds"].decision.note


def test_revisions_resolve_to_runs_commits_and_db_only_hashes(
    repo: tuple[Path, str, str], db: Database
) -> None:
    path, first, _ = repo
    record_run(db, first, [job_b(0.5)])
    foreign = "abcdef1234" + "0" * 30  # merged from another clone: git here does not know it
    record_run(db, foreign, [job_b(0.5)])
    with db.sessions() as s:
        assert resolve_target(s, "1", path).run_id == 1
        assert resolve_target(s, "v1", path).commit == first
        assert resolve_target(s, "HEAD~1", path).commit == first
        assert resolve_target(s, "abcdef1234", path).commit == "abcdef1234"
        with pytest.raises(UserError, match="did you mean 'main'"):
            resolve_target(s, "mian", path)
        with pytest.raises(UserError, match="'42' is neither a run id in this database"):
            resolve_target(s, "42", path)
        with pytest.raises(UserError, match="no results recorded at this commit"):
            load_snapshot(s, resolve_target(s, "HEAD", path))
        with pytest.raises(UserError, match="did you mean 'toy'"):
            load_snapshot(s, resolve_target(s, "v1", path), suite="tyo")


# -- through the command line -----------------------------------------------------------------------


def cli(*args: str) -> tuple[int, str, BaseException | None]:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, list(args))
    error = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.output, error


def test_check_exits_1_naming_regressions_and_fail_on_narrows(
    repo: tuple[Path, str, str], db: Database
) -> None:
    path, first, second = repo
    url = db.url
    record_run(db, first, [job_a(0.70, 1000, 10.0)])
    record_run(db, second, [job_a(0.60, 1000, 13.0)])
    code, out, error = cli("check", "--baseline", "v1", "--db", url, "--repo", str(path))
    assert error is None and code == 1
    assert "REGRESSED: 2 metric(s)" in out
    assert "tiny w8 · mIoU -10.00 pts" in out and "tiny w8 · latency_ms +30.0% on CPU hw-a" in out
    # only latency gates, and 50 % is allowed: passes
    code, out, _ = cli(
        "check", "--baseline", "v1", "--db", url, "--repo", str(path), "--fail-on", "latency:+50%"
    )
    assert code == 0 and "check passed: no regression in latency_ms" in out
    code, out, _ = cli("check", "--baseline", "v1", "--db", url, "--repo", str(path), "--fail-on", "mIoU:-20")
    assert code == 0
    code, out, _ = cli("check", "--baseline", "v1", "--db", url, "--repo", str(path), "--fail-on", "mIoU:-5")
    assert code == 1 and "mIoU" in out and "latency_ms" not in out.split("REGRESSED")[1]
    _, _, error = cli(
        "check", "--baseline", "v1", "--db", url, "--repo", str(path), "--fail-on", "memory:+5%"
    )
    assert isinstance(error, UserError) and "--fail-on peak_memory_bytes: not recorded" in str(error)
    # the same revision against itself
    code, out, _ = cli("check", "--baseline", "v1", "--head", "v1", "--db", url, "--repo", str(path))
    assert code == 0 and "Every compared metric is unchanged." in out


def test_compare_json_and_bad_input(repo: tuple[Path, str, str], db: Database) -> None:
    path, first, second = repo
    record_run(db, first, [job_a(0.70, 1000, 10.0)])
    record_run(db, second, [job_a(0.70, 900, 10.0)])
    code, out, error = cli(
        "compare", "v1", "main", "--db", db.url, "--repo", str(path), "-f", "json", "-m", "params"
    )
    assert code == 0 and error is None
    doc = json.loads(out)
    assert doc["base"]["commit"] == first and doc["head"]["runs"] == [2]
    assert [(r["metric"], r["verdict"], r["change"]) for r in doc["rows"]] == [
        ("params", "improved", "-10.0%")
    ]
    _, _, error = cli("compare", "v1", "main", "--db", db.url, "--repo", str(path), "-m", "mIoUU")
    assert isinstance(error, UserError) and "did you mean 'mIoU'" in str(error)
    _, _, error = cli("compare", "v1", "main", "--db", db.url, "--repo", str(path), "--threshold", "mIoU")
    assert isinstance(error, UserError) and "expected METRIC:AMOUNT" in str(error)
    record_run(db, first, [job_b(0.5)], suite="other")
    _, _, error = cli("compare", "v1", "main", "--db", db.url, "--repo", str(path), "--suite", "other")
    assert isinstance(error, UserError) and "no runs of suite 'other'" in str(error)


def test_compare_with_threshold_override(repo: tuple[Path, str, str], db: Database) -> None:
    path, first, second = repo
    record_run(db, first, [job_a(0.70, 1000, 10.0)])
    record_run(db, second, [job_a(0.69, 1000, 10.0)])
    code, out, _ = cli("compare", "v1", "main", "--db", db.url, "--repo", str(path), "-m", "mIoU")
    assert "**regressed**" in out
    code, out, _ = cli(
        "compare", "v1", "main", "--db", db.url, "--repo", str(path), "-m", "mIoU", "--threshold", "mIoU:2"
    )
    assert "**regressed**" not in out and "mIoU ±2 pts" in out


def test_no_common_job_is_an_error(repo: tuple[Path, str, str], db: Database) -> None:
    path, first, second = repo
    record_run(db, first, [job_a(0.70, 1000, 10.0)])
    record_run(db, second, [job_b(0.5)])
    _, _, error = cli("check", "--baseline", "v1", "--db", db.url, "--repo", str(path))
    assert isinstance(error, UserError) and "share no job" in str(error)
