"""What a killed driver, a locked database and a second driver cost (docs/reliability.md).

End-to-end tests run the real CLI as subprocesses on a real SQLite file (and a
real PostgreSQL server), with real kills; the store-level tests drive the
Recorder against a real SQLite file whose write lock another connection holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, select, text

from segbench.jobs import ArtifactValue, SeriesValue
from segbench.store import liveness
from segbench.store.db import MIGRATIONS, open_db
from segbench.store.journal import Journal, decode, encode
from segbench.store.merge import merge_databases
from segbench.store.recorder import repair
from segbench.store.schema import Claim, Job, Metric, Run
from tests.test_spine import REPO, db_rows, segbench
from tests.test_store import result, sqlite_url, start, write_suite

#: one training group per job, training and evaluation only: the cheapest suite that trains
SUITE = textwrap.dedent(
    """
    name: reliability
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 16, val_length: 4}
    models:
      - name: "tests.tinymodels:tiny_segnet"
        label: tiny
    variants:
      grid:
        width: [4, 6]
    stages: [train, eval]
    train: {iterations: 2, batch_size: 2, aux_weight: null}
    eval: {batch_size: 2}
    """
)


def launch(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``segbench ARGS`` started, not waited for (own session, so its workers can be killed with it)."""
    base = {**os.environ, "PYTHONPATH": str(REPO), "SEGBENCH_DB": "", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "segbench", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"segbench still running after {timeout}s\n{out}\n{err}") from None
    return proc.returncode, out, err


# --- two drivers on one suite -----------------------------------------------------------


def two_drivers(workspace: Path, db: str) -> list[tuple[int, int, str, int | None]]:
    """Start two ``segbench run`` at once on one suite and database; (run, job, status, source) rows."""
    (workspace / "suite.yaml").write_text(SUITE)
    args = ("run", "suite.yaml", "--devices", "cpu", "--db", db)
    procs = [launch(*args, cwd=workspace), launch(*args, cwd=workspace)]
    outcomes = [finish(p) for p in procs]
    for rc, out, err in outcomes:
        assert rc == 0, out + err
    report = segbench("report", "--format", "json", "--db", db, cwd=workspace, check=True)
    doc = json.loads(report.stdout)
    assert [r["status"] for r in doc["rows"]] == ["done", "done"]
    assert not any("incomplete" in n for n in doc["notes"]) and "warning" not in report.stderr
    database = open_db(db, create=False)
    try:
        with database.sessions() as s:
            assert [r.status for r in s.scalars(select(Run))] == ["done", "done"]
            assert s.scalars(select(Claim)).all() == []  # every claim given back
            rows = s.execute(select(Job.run_id, Job.id, Job.status, Job.source_job_id, Job.job_key)).all()
    finally:
        database.close()
    trained: dict[str, int] = {}
    for _, _, status, _, key in rows:
        trained[key] = trained.get(key, 0) + (status == "done")
    assert trained == dict.fromkeys(trained, 1), f"a job key was trained twice: {rows}"
    return [(run, job, status, source) for run, job, status, source, _ in rows]


def check_one_training_each(rows: list[tuple[int, int, str, int | None]]) -> None:
    done = {job for _, job, status, _ in rows if status == "done"}
    for run, _, status, source in rows:
        if status == "cached":
            # it points at the other run's result, never at a job of its own run
            assert source in done and next(r for r, j, _, _ in rows if j == source) != run


@pytest.mark.slow
def test_two_drivers_on_sqlite_train_every_job_once(tmp_path: Path) -> None:
    rows = two_drivers(tmp_path, sqlite_url(tmp_path / "results" / "segbench.db"))
    check_one_training_each(rows)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_drivers_on_postgres_train_every_job_once(tmp_path: Path, pg_url: str) -> None:
    rows = two_drivers(tmp_path, pg_url)
    check_one_training_each(rows)


def test_a_claim_has_one_owner_until_its_driver_is_gone(tmp_path: Path) -> None:
    db = open_db(sqlite_url(tmp_path / "results.db"))
    try:
        suite = write_suite(tmp_path)
        first, specs = start(db, suite)
        second, _ = start(db, suite)
        key = specs[0].train_key
        assert first.claim(key) and first.claim(key)  # taken, and held by its owner
        assert not second.claim(key)  # its driver (this process) is alive and its lease runs
        with db.sessions() as s:
            before = s.get(Run, first.run_id).heartbeat_at  # type: ignore[union-attr]
            lease = s.scalars(select(Claim.lease_until)).one()
        with liveness.heartbeat(first.beat, 0.05):  # from its own thread and session
            time.sleep(0.5)
        with db.sessions() as s:
            assert s.get(Run, first.run_id).heartbeat_at > before  # type: ignore[union-attr, operator]
            assert s.scalars(select(Claim.lease_until)).one() > lease
        assert not second.claim(key)

        with db.session() as s:  # the first driver dies: its pid exists, but as another process
            s.get(Run, first.run_id).driver_started = -1  # type: ignore[union-attr]
        assert second.claim(key)
        with db.sessions() as s:
            assert [c.run_id for c in s.scalars(select(Claim))] == [second.run_id]

        with db.session() as s:  # the owner runs on another host: only its lease can tell
            s.get(Run, second.run_id).host = "elsewhere"  # type: ignore[union-attr]
        assert not first.claim(key)
        with db.session() as s:
            s.execute(
                text("update claims set lease_until = :t"), {"t": liveness.now() - timedelta(seconds=1)}
            )
        assert first.claim(key)  # the lease ran out: taken over
        with db.sessions() as s:
            assert [c.run_id for c in s.scalars(select(Claim))] == [first.run_id]
        first.release(key)
        with db.sessions() as s:
            assert s.scalars(select(Claim)).all() == []
    finally:
        db.close()


def test_a_claimed_group_adopts_only_what_was_recorded_since_its_run_began(tmp_path: Path) -> None:
    db = open_db(sqlite_url(tmp_path / "results.db"))
    try:
        suite = write_suite(tmp_path)
        earlier, specs = start(db, suite)
        done = earlier.plan(specs)
        earlier.record(done[0].job_id, result(done[0].spec))
        earlier.finish("done")
        waiting, _ = start(db, suite)  # --rerun all: the earlier result is not to be reused
        mine = waiting.plan(specs, "all")
        assert waiting.adopt_results(mine) == {}
        concurrent, _ = start(db, suite)  # another driver records job 0 while this one waits
        theirs = concurrent.plan(specs, "all")
        concurrent.record(theirs[0].job_id, result(theirs[0].spec))
        adopted = waiting.adopt_results(mine)
        assert {job_id: source.id for job_id, source in adopted.items()} == {mine[0].job_id: theirs[0].job_id}
        with db.sessions() as s:
            job = s.get(Job, mine[0].job_id)
            assert job is not None and (job.status, job.source_job_id) == ("cached", theirs[0].job_id)
    finally:
        db.close()


# --- a driver that dies ------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_driver_is_reported_then_closed_by_the_next_run(tmp_path: Path) -> None:
    slow = SUITE.replace("iterations: 2", "iterations: 400").replace("width: [4, 6]", "width: [4]")
    (tmp_path / "suite.yaml").write_text(slow)
    path = tmp_path / "results" / "segbench.db"
    proc = launch("run", "suite.yaml", "--devices", "cpu", cwd=tmp_path)
    try:
        wait_for_job(proc, path, "running")
        os.kill(proc.pid, signal.SIGKILL)  # the driver, as the OOM killer would
        proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its orphaned workers
        proc.communicate()
    assert db_rows(path, "select status from runs") == [("running",)]

    report = segbench("report", "--format", "json", cwd=tmp_path, check=True)
    gone = f"driver pid {proc.pid} on host"
    warning = " ".join(report.stderr.split())  # rich wraps the line
    assert f"warning: run 1 is incomplete: it is recorded as running but {gone}" in warning
    doc = json.loads(report.stdout)
    assert [r["status"] for r in doc["rows"]] == ["interrupted"]
    assert gone in doc["notes"][0]
    markdown = segbench("report", cwd=tmp_path, check=True).stdout
    assert gone in markdown
    assert " stale " in segbench("list", "runs", cwd=tmp_path, check=True).stdout
    assert db_rows(path, "select status from runs") == [("running",)]  # reading never wrote

    again = segbench("run", "suite.yaml", "--devices", "cpu", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"run 1 (reliability): interrupted, 1 unfinished job(s) interrupted: {gone}" in " ".join(
        again.stderr.split()
    )
    assert "1 ran, 0 reused, 0 failed" in again.stdout
    assert db_rows(path, "select status from runs order by id") == [("interrupted",), ("done",)]
    (status, kind, error), done = db_rows(path, "select status, failure_kind, error from jobs order by id")
    assert (status, kind) == ("interrupted", "interrupted") and gone in error
    assert done[0] == "done"
    latest = segbench("report", cwd=tmp_path, check=True)
    assert "incomplete" not in latest.stdout + latest.stderr


def test_repair_closes_only_runs_whose_driver_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "results" / "segbench.db"
    db = open_db(sqlite_url(path))
    suite = write_suite(tmp_path)
    recorders = [start(db, suite) for _ in range(5)]
    for recorder, specs in recorders:
        recorder.plan(specs, "all")
    ids = [r.run_id for r, _ in recorders]
    stale = liveness.now() - timedelta(minutes=10)
    with db.session() as s:
        runs = [s.get(Run, i) for i in ids]
        dead_pid = _dead_pid()
        runs[0].driver_pid = dead_pid  # type: ignore[union-attr]
        runs[1].driver_started = -1  # type: ignore[union-attr]  # this pid, but another process now
        runs[2].host, runs[2].heartbeat_at = "elsewhere", stale  # type: ignore[union-attr]
        runs[3].driver_boot = "another-boot"  # type: ignore[union-attr]  # same name, another machine:
        # its pid means nothing here (this process's, alive or not), and its heartbeat is fresh
        runs[3].driver_pid = dead_pid  # type: ignore[union-attr]
        # runs[4]: this very process, alive
    db.close()
    out = segbench("db", "repair", cwd=tmp_path, check=True).stdout
    text_out = " ".join(out.split())
    assert (
        f"run {ids[0]} (spine): interrupted, 2 unfinished job(s) interrupted: driver pid {dead_pid}"
        in text_out
    )
    assert f"run {ids[1]} (spine): interrupted" in text_out and "the pid is another process now" in text_out
    assert f"run {ids[2]} (spine): interrupted" in text_out and "no heartbeat since" in text_out
    assert "3 change(s)" in text_out
    statuses = db_rows(path, "select run_id, status, failure_kind from jobs order by id")
    for run_id, status, kind in statuses:
        if run_id in ids[:3]:
            assert (status, kind) == ("interrupted", "interrupted")
        else:
            assert (status, kind) == ("pending", None)
    assert db_rows(path, "select status from runs order by id") == [("interrupted",)] * 3 + [("running",)] * 2
    assert "nothing to repair" in segbench("db", "repair", cwd=tmp_path, check=True).stdout


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- a locked database -------------------------------------------------------------------


@pytest.fixture()
def locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A database with a planned job, and a connection that can hold its write lock."""
    monkeypatch.setenv("SEGBENCH_BUSY_TIMEOUT", "0.5")
    path = tmp_path / "results.db"
    db = open_db(sqlite_url(path))
    recorder, specs = start(db, write_suite(tmp_path))
    planned = recorder.plan(specs)[0]
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    yield db, recorder, planned, holder
    holder.close()
    db.close()


def test_a_result_the_locked_database_cannot_take_waits_in_the_journal(locked) -> None:  # type: ignore[no-untyped-def]
    db, recorder, planned, holder = locked
    res = result(planned.spec, miou=0.25)
    res.series.append(SeriesValue("loss", [1, 2], [0.5, 0.25]))
    res.artifacts.append(ArtifactValue("sample.png", "image/png", b"\x89PNG\x00"))
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    kept = recorder.keep(planned.job_id, res, patience=1.0)
    assert kept.result is None and kept.waiting == "OperationalError: database is locked"
    entries = Journal(db.url).entries()
    assert [(e.run_uid, e.job_id) for e in entries] == [(recorder.run_uid, planned.job_id)]
    assert Journal(db.url).path == Path(f"{db_path(db)}.journal.jsonl")
    with db.sessions() as s:
        assert s.get(Job, planned.job_id).status == "pending"  # type: ignore[union-attr]  # not failed
    waiting = repair(db)
    assert any("still holds results (OperationalError: database is locked)" in line for line in waiting)
    holder.execute("ROLLBACK")

    assert repair(db) == [
        f"journal: recorded job {planned.job_id} of run {recorder.run_id} ({planned.spec.label})"
    ]
    with db.sessions() as s:
        job = s.get(Job, planned.job_id)
        assert job is not None and (job.status, job.error, job.failure_kind) == ("done", None, None)
        assert [(m.name, m.value) for m in job.metrics] == [("mIoU", 0.25)]
        assert [a.data for a in job.artifacts] == [b"\x89PNG\x00"]
    assert not Journal(db.url).path.exists()
    # replaying an entry whose job is recorded already records nothing twice
    Journal(db.url).append(recorder.run_uid, planned.job_id, res)
    assert repair(db) == []
    with db.sessions() as s:
        assert len(s.scalars(select(Metric).where(Metric.job_id == planned.job_id)).all()) == 1


def test_a_result_is_recorded_once_the_lock_is_released(locked) -> None:  # type: ignore[no-untyped-def]
    db, recorder, planned, holder = locked
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(2.0, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        kept = recorder.keep(planned.job_id, result(planned.spec, miou=0.5), patience=60.0)
    finally:
        release.join()
    assert kept.result is not None and kept.result.ok
    with db.sessions() as s:
        assert s.get(Job, planned.job_id).status == "done"  # type: ignore[union-attr]
    assert Journal(db.url).entries() == []


@pytest.mark.slow
def test_a_run_whose_database_stays_locked_keeps_its_result_for_the_next_writer(tmp_path: Path) -> None:
    one = SUITE.replace("iterations: 2", "iterations: 600").replace("width: [4, 6]", "width: [4]")
    (tmp_path / "suite.yaml").write_text(one)
    path = tmp_path / "results" / "segbench.db"
    env = {"SEGBENCH_BUSY_TIMEOUT": "1", "SEGBENCH_RECORD_PATIENCE": "2"}
    proc = launch("run", "suite.yaml", "--devices", "cpu", cwd=tmp_path, env=env)
    holder = None
    try:
        wait_for_job(proc, path, "running")
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # from now on until the run ends, nobody else writes
        rc, out, err = finish(proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
    said = " ".join((out + err).split())
    assert rc == 1, said
    assert "(OperationalError: database is locked); they wait in" in said
    assert "1 result(s) wait in the journal" in said and "0 failed" in said
    assert "autoflush" not in said
    assert db_rows(path, "select status from jobs") == [("running",)]  # never recorded failed
    assert Path(f"{path}.journal.jsonl").exists()

    repaired = segbench("db", "repair", cwd=tmp_path, check=True).stdout
    assert "journal: recorded job 1 of run 1" in repaired
    assert db_rows(path, "select status, failure_kind from jobs") == [("done", None)]
    assert db_rows(path, "select count(*) from metrics where name = 'mIoU'") == [(1,)]
    assert db_rows(path, "select status from runs") == [("done",)]  # nothing was left unfinished
    assert not Path(f"{path}.journal.jsonl").exists()


def wait_for_job(proc: subprocess.Popen[str], path: Path, status: str) -> None:
    """Until the run's only job has ``status`` (the run must still be going)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            try:
                if db_rows(path, "select status from jobs") == [(status,)]:
                    return
            except sqlite3.OperationalError:
                pass  # not migrated yet
        time.sleep(0.2)
    raise AssertionError(f"the run ended or its job never was {status}")


def test_a_journaled_result_round_trips(tmp_path: Path) -> None:
    from segbench.jobs import JobResult

    res = JobResult(
        job_key="k", ok=True, hardware={"cpu": "x"}, hardware_key="h", stage_seconds={"eval": 1.5}
    )
    res.add("latency_ms", 3.5, "latency", samples=[3.0, 4.0], extra={"cv": 0.1})
    res.artifacts.append(ArtifactValue("a.png", "image/png", bytes(range(256))))
    assert decode(json.loads(json.dumps(encode(res)))) == res


def test_a_journaled_result_keeps_its_per_image_evidence() -> None:
    from segbench.jobs import EvidenceValue, JobResult

    evidence = EvidenceValue("diagnostic", "val", 4, 3, "sha", "npz-1", ["intersection"], bytes(range(256)))
    res = JobResult(job_key="k", ok=True, evidence=evidence)
    assert decode(json.loads(json.dumps(encode(res)))).evidence == evidence


def db_path(db) -> str:  # type: ignore[no-untyped-def]
    from sqlalchemy.engine import make_url

    return str(make_url(db.url).database)


# --- honest re-runs ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_death_is_retried_and_a_model_failure_is_counted_on_every_rerun(tmp_path: Path) -> None:
    suite = SUITE.replace("width: [4, 6]", "fail: [crash_once, train]")
    (tmp_path / "suite.yaml").write_text(suite)
    path = tmp_path / "results" / "segbench.db"
    args = ("run", "suite.yaml", "--devices", "cpu")

    first = segbench(*args, cwd=tmp_path)
    assert first.returncode == 1 and "2 ran, 0 reused, 2 failed" in first.stdout, first.stdout + first.stderr
    assert db_rows(path, "select failure_kind from jobs order by id") == [("lost",), ("model",)]

    second = segbench(*args, cwd=tmp_path)  # the lost job runs again; the model's failure is its result
    assert second.returncode == 1, second.stdout + second.stderr
    assert "1 ran, 1 reused, 1 failed (1 reused)" in second.stdout
    assert "deliberate failure while training" in second.stdout

    third = segbench(*args, cwd=tmp_path)
    assert third.returncode == 1 and "0 ran, 2 reused, 1 failed (1 reused)" in third.stdout
    rows = json.loads(segbench("report", "--format", "json", cwd=tmp_path, check=True).stdout)["rows"]
    assert sorted(r["status"] for r in rows) == ["done", "failed"]


# --- the schema ----------------------------------------------------------------------------


def test_migration_0002_classifies_failures_recorded_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = create_engine(sqlite_url(path))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(
            text(
                "insert into runs (id, uid, suite_name, suite_path, suite_text, suite_sha, code_id, host,"
                " segbench_version, python_version, command, environment, started_at, status) values"
                " (1, 'u', 's', 'p', 't', 'h', 'c', 'host', '0', '3', 'cmd', '{}', '2026-01-01', 'done')"
            )
        )
        errors = [
            ("failed", "worker process died (exit code 3)"),
            ("failed", "not run: it shares its training with x, which was lost (worker process died)"),
            ("failed", "Ray task failed: node lost"),
            ("failed", "the database refused this job's results: IntegrityError"),
            ("failed", "train: RuntimeError: boom"),
            ("interrupted", None),
            ("done", None),
        ]
        for i, (status, error) in enumerate(errors):
            conn.execute(
                text(
                    "insert into jobs (run_id, job_key, train_key, position, label, model, model_label, dataset,"
                    " dataset_label, seed, factors, config, status, error, stage_seconds) values"
                    " (1, :k, 't', :i, 'l', 'm', 'm', 'd', 'd', 0, '{}', '{}', :s, :e, '{}')"
                ),
                {"k": f"k{i}", "i": i, "s": status, "e": error},
            )
    engine.dispose()
    open_db(sqlite_url(path)).close()
    assert db_rows(path, "select failure_kind from jobs order by id") == [
        ("lost",),
        ("lost",),
        ("lost",),
        ("infrastructure",),
        ("model",),
        ("interrupted",),
        (None,),
    ]


def test_merge_carries_liveness_and_failure_kinds(tmp_path: Path) -> None:
    there = open_db(sqlite_url(tmp_path / "there.db"))
    here = open_db(sqlite_url(tmp_path / "here.db"))
    try:
        recorder, specs = start(there, write_suite(tmp_path))
        planned = recorder.plan(specs, "all")
        recorder.record(
            planned[0].job_id, result(planned[0].spec, ok=False, error="x", failed_stage="worker")
        )
        recorder.finish("failed")
        merge_databases(here, there)
        with here.sessions() as s:
            run = s.scalars(select(Run)).one()
            assert run.driver_pid == os.getpid() and run.heartbeat_at is not None
            kinds = [j.failure_kind for j in run.jobs]
            assert kinds == ["lost", "interrupted"]
    finally:
        here.close()
        there.close()
