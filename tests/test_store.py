"""The results database: real SQLite files, real Alembic migrations, real git repositories.

Everything goes through the store's public surface (``open_db``, ``resolve_url``,
``Recorder``) or the CLI, and is read back from the database file itself.
"""

from __future__ import annotations

import multiprocessing
import platform
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import alembic.command
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from segbench.config import load_suite
from segbench.errors import UserError
from segbench.jobs import ArtifactValue, JobResult, JobSpec, MetricValue, SeriesValue
from segbench.store import provenance
from segbench.store.db import DEFAULT_URL, HEAD_REVISION, MIGRATIONS, Database, open_db, resolve_url
from segbench.store.recorder import Recorder
from segbench.store.schema import Base, Hardware, Job, Metric, Run
from segbench.suite import expand
from tests.test_regress_support import commit_file, git, init_repo
from tests.test_spine import REPO, SUITE, db_rows, segbench

VERSIONS = {"torch": "9.9.9+test", "cuda": None, "cudnn": None}


# --- helpers (no tests here) -------------------------------------------------------------


def alembic_head() -> str:
    """The newest revision the migration scripts define (what a fresh database must be at)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def write_suite(directory: Path, text: str = SUITE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "suite.yaml"
    path.write_text(text)
    return path


def start(db: Database, suite_path: Path) -> tuple[Recorder, list[JobSpec]]:
    """A Recorder with a run started for the suite at ``suite_path``."""
    loaded = load_suite(suite_path)
    recorder = Recorder(db)
    recorder.start_run(loaded, "segbench run suite.yaml --devices cpu", VERSIONS)
    return recorder, expand(loaded)


def result(spec: JobSpec, *, ok: bool = True, miou: float = 0.5, **kw) -> JobResult:  # type: ignore[no-untyped-def]
    res = JobResult(job_key=spec.job_key, ok=ok, device="cpu", stage_seconds={"eval": 0.25}, **kw)
    res.add("mIoU", miou, "eval")
    return res


def schema_snapshot(path: Path) -> list[tuple]:
    return db_rows(path, "select type, name, sql from sqlite_master order by type, name")


@pytest.fixture()
def pinned_segbench(monkeypatch: pytest.MonkeyPatch) -> provenance.GitState:
    """Hold segbench's own git state still: other edits to the live checkout must not change code_id
    between two runs of one test (a suite repo's state stays real)."""
    state = provenance.GitState("5" * 40, "main", False, None, str(REPO))
    monkeypatch.setattr(provenance, "segbench_git_state", lambda outputs=(): state)
    return state


# --- opening and migrating ---------------------------------------------------------------


def test_fresh_database_is_created_and_migrated_to_head(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "results.db"
    db = open_db(sqlite_url(path))
    try:
        assert path.is_file()
        head = alembic_head()
        assert head == HEAD_REVISION, "db.HEAD_REVISION must name the newest migration"
        assert db_rows(path, "select version_num from alembic_version") == [(head,)]
        tables = {r[0] for r in db_rows(path, "select name from sqlite_master where type = 'table'")}
        assert {"hardware", "runs", "jobs", "metrics", "series", "artifacts"} <= tables
        # the migrations build exactly what the ORM declares
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        db.close()


def test_opening_an_existing_database_again_is_a_no_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pinned_segbench: provenance.GitState
) -> None:
    path = tmp_path / "results.db"
    db = open_db(sqlite_url(path))
    recorder, specs = start(db, write_suite(tmp_path))
    planned = recorder.plan(specs)
    recorder.record(planned[0].job_id, result(planned[0].spec, miou=0.25))
    recorder.finish("done")
    db.close()
    before = schema_snapshot(path)

    def no_upgrade(*args: object, **kw: object) -> None:
        raise AssertionError("a database already at head was migrated again")

    monkeypatch.setattr(alembic.command, "upgrade", no_upgrade)
    again = open_db(sqlite_url(path), create=False)
    try:
        assert schema_snapshot(path) == before
        assert db_rows(path, "select version_num from alembic_version") == [(HEAD_REVISION,)]
        with again.sessions() as s:
            assert s.scalars(select(Metric.value).where(Metric.name == "mIoU")).all() == [0.25]
            assert [r.status for r in s.scalars(select(Run))] == ["done"]
    finally:
        again.close()


def test_sqlite_uses_wal_and_waits_for_a_busy_writer(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    db = open_db(sqlite_url(path))
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        # WAL is a property of the file: any other client sees it too
        assert db_rows(path, "PRAGMA journal_mode") == [("wal",)]

        # another process holds the write lock for a moment: the writer waits instead of failing
        locked, hold = threading.Event(), 0.6

        def other_writer() -> None:
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("insert into hardware (key, identity) values ('other', '{}')")
            locked.set()
            time.sleep(hold)
            conn.execute("COMMIT")
            conn.close()

        thread = threading.Thread(target=other_writer)
        thread.start()
        assert locked.wait(10)
        t0 = time.monotonic()
        with db.session() as s:
            s.add(Hardware(key="mine", identity={"cpu_cores": 2}))
        waited = time.monotonic() - t0
        thread.join()
        assert waited >= hold / 2
        assert sorted(r[0] for r in db_rows(path, "select key from hardware")) == ["mine", "other"]
    finally:
        db.close()


def _open_after(url: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        open_db(url).close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_creating_one_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    """Parallel runs (or CI shards) pointed at one new file: one migrates, the others wait and use it."""
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_after, args=(url, barrier, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == ["ok"] * 4, outcomes
        assert db_rows(tmp_path / f"race{attempt}.db", "select version_num from alembic_version") == [
            (HEAD_REVISION,)
        ]


def test_database_at_a_newer_unknown_revision_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    open_db(sqlite_url(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("update alembic_version set version_num = '9999_from_the_future'")
    before = schema_snapshot(path)

    proc = segbench("list", "runs", "--db", sqlite_url(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sqlite_url(path) in proc.stderr
    assert "'9999_from_the_future'" in proc.stderr and "newer" in proc.stderr
    # the writing path (`segbench run` opens with create=True) refuses too
    with pytest.raises(UserError, match="9999_from_the_future"):
        open_db(sqlite_url(path))

    assert schema_snapshot(path) == before
    assert db_rows(path, "select version_num from alembic_version") == [("9999_from_the_future",)]


# --- URLs and errors ---------------------------------------------------------------------


def test_resolve_url_prefers_flag_then_environment_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag, env = sqlite_url(tmp_path / "flag.db"), sqlite_url(tmp_path / "env.db")
    monkeypatch.delenv("SEGBENCH_DB", raising=False)
    assert DEFAULT_URL == "sqlite:///results/segbench.db"
    assert resolve_url(None) == DEFAULT_URL
    assert resolve_url(flag) == flag
    monkeypatch.setenv("SEGBENCH_DB", env)
    assert resolve_url(flag) == flag
    assert resolve_url(None) == env
    monkeypatch.setenv("SEGBENCH_DB", "")  # set but empty counts as unset
    assert resolve_url(None) == DEFAULT_URL
    # a plain path names a SQLite file; what starts like a URL stays one, to be reported if it is wrong
    assert resolve_url("results/mine.db") == "sqlite:///results/mine.db"
    assert resolve_url(str(tmp_path / "team.db")) == sqlite_url(tmp_path / "team.db")
    assert resolve_url("postgresql:/host/db") == "postgresql:/host/db"

    # and open_db follows it: the default is relative to the working directory
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGBENCH_DB")
    open_db().close()
    assert (tmp_path / "results" / "segbench.db").is_file()
    monkeypatch.setenv("SEGBENCH_DB", env)
    opened = open_db()
    assert opened.url == env
    opened.close()
    assert (tmp_path / "env.db").is_file() and not (tmp_path / "flag.db").exists()
    opened = open_db("plain/path.db")
    opened.close()
    assert (tmp_path / "plain" / "path.db").is_file()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case", ["malformed", "unknown-dialect", "unreachable-server", "not-a-database"])
def test_bad_or_unreachable_database_is_a_user_error_naming_the_url(tmp_path: Path, case: str) -> None:
    if case == "malformed":
        url, shown, why = "postgresql:/host/db", "postgresql:/host/db", "not a database URL"
    elif case == "unknown-dialect":
        url, shown, why = "nosuchdb://host/x", "nosuchdb://host/x", "nosuchdb"
    elif case == "unreachable-server":
        port = _closed_port()
        url = f"postgresql+psycopg://bench:s3cret@127.0.0.1:{port}/results"
        shown, why = (
            f"postgresql+psycopg://bench:***@127.0.0.1:{port}/results",
            "cannot open results database",
        )
    else:
        (tmp_path / "notes.db").write_text("these are my notes, not a database\n" * 100)
        url = shown = sqlite_url(tmp_path / "notes.db")
        why = "not a database"
    proc = segbench("list", "runs", "--db", url, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
    assert shown in proc.stderr and why in proc.stderr
    assert "s3cret" not in proc.stderr


def test_database_that_cannot_be_created_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")
    with pytest.raises(UserError, match="blocker"):
        open_db(sqlite_url(tmp_path / "blocker" / "results" / "segbench.db"))


# --- recording ---------------------------------------------------------------------------


def test_recorded_metrics_read_back_exactly(tmp_path: Path, pinned_segbench: provenance.GitState) -> None:
    path = tmp_path / "results.db"
    db = open_db(sqlite_url(path))
    recorder, specs = start(db, write_suite(tmp_path))
    planned = recorder.plan(specs)
    assert [p.spec.job_key for p in planned] == [s.job_key for s in specs]
    identity = {"cpu_model": "Test CPU", "cpu_cores": 2, "gpu_name": None, "threads": 1}
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    res = JobResult(
        job_key=specs[0].job_key,
        ok=True,
        metrics=[
            MetricValue(
                "latency_ms",
                12.5,
                "ms",
                "latency",
                samples=[12.0, 12.5, 13.25],
                extra={"cv": 0.04, "noisy": False},
            ),
            MetricValue("per_class_iou", 0.5, "fraction", "eval", samples=[0.25, None, 0.75]),
            MetricValue("macs", 154624.0, "FLOP", "complexity", extra={"unsupported": {"aten::foo": 2}}),
            MetricValue("empty_iou", float("nan"), "fraction", "eval"),
        ],
        series=[SeriesValue("loss", [1, 2, 3], [2.0, 1.5, 1.25])],
        artifacts=[ArtifactValue("pred_0.png", "image/png", png)],
        stage_seconds={"latency": 0.5, "eval": 1.5},
        device="cpu",
        hardware=identity,
        hardware_key="hwkey000001",
    )
    recorder.mark_running(planned[0].job_id, "cpu")
    recorder.record(planned[0].job_id, res)
    # the second job on the same machine shares the hardware row
    recorder.record(planned[1].job_id, result(planned[1].spec, hardware=identity, hardware_key="hwkey000001"))
    recorder.finish("done")
    db.close()

    reopened = open_db(sqlite_url(path), create=False)
    try:
        with reopened.sessions() as s:
            job = s.get(Job, planned[0].job_id)
            assert job is not None
            assert (job.status, job.device, job.job_key) == ("done", "cpu", specs[0].job_key)
            assert job.stage_seconds == {"latency": 0.5, "eval": 1.5}
            assert job.config == specs[0].to_dict() and job.factors == {"width": 4}
            assert job.started_at is not None and job.finished_at is not None
            got = {m.name: (m.stage, m.value, m.unit, m.samples, m.extra) for m in job.metrics}
            assert got == {
                "latency_ms": ("latency", 12.5, "ms", [12.0, 12.5, 13.25], {"cv": 0.04, "noisy": False}),
                "per_class_iou": ("eval", 0.5, "fraction", [0.25, None, 0.75], None),
                "macs": ("complexity", 154624.0, "FLOP", None, {"unsupported": {"aten::foo": 2}}),
                "empty_iou": ("eval", None, "fraction", None, None),  # NaN is stored as NULL
            }
            assert [(x.name, x.steps, x.values) for x in job.series] == [
                ("loss", [1, 2, 3], [2.0, 1.5, 1.25])
            ]
            assert [(a.name, a.media_type, a.data) for a in job.artifacts] == [
                ("pred_0.png", "image/png", png)
            ]
            hardware = s.scalars(select(Hardware)).all()
            assert [(h.key, h.cpu_model, h.cpu_cores, h.identity) for h in hardware] == [
                ("hwkey000001", "Test CPU", 2, identity)
            ]
            assert {j.hardware_id for j in s.scalars(select(Job))} == {hardware[0].id}
            run = s.scalars(select(Run)).one()
            assert run.status == "done" and run.finished_at is not None
            assert run.suite_text == SUITE and run.suite_name == "spine"
    finally:
        reopened.close()


def test_recording_a_job_twice_keeps_the_first_result_and_a_metric_twice_is_refused(
    tmp_path: Path, pinned_segbench: provenance.GitState
) -> None:
    path = tmp_path / "results.db"
    db = open_db(sqlite_url(path))
    recorder, specs = start(db, write_suite(tmp_path))
    first, second = recorder.plan(specs)
    recorder.record(first.job_id, result(first.spec, miou=0.25))

    # recording the job again (a retried task, a replay) must not overwrite mIoU, nor anything else
    # of the job: the first result recorded stands, the second is dropped
    recorder.record(first.job_id, result(first.spec, ok=False, miou=0.75, error="again"))
    # one result naming a metric twice is refused as a whole: one transaction per job
    doubled = result(second.spec, miou=0.5, series=[SeriesValue("loss", [1], [1.0])])
    doubled.add("mIoU", 0.6, "eval")
    with pytest.raises(IntegrityError):
        recorder.record(second.job_id, doubled)
    # the ORM path refuses a duplicate as well
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Metric(job_id=first.job_id, stage="eval", name="mIoU", value=0.9, unit="fraction"))
    db.close()

    assert db_rows(path, f"select value from metrics where job_id = {first.job_id}") == [(0.25,)]
    assert db_rows(path, f"select status, error from jobs where id = {first.job_id}") == [("done", None)]
    assert db_rows(path, f"select status from jobs where id = {second.job_id}") == [("pending",)]
    assert db_rows(path, f"select count(*) from metrics where job_id = {second.job_id}") == [(0,)]
    assert db_rows(path, f"select count(*) from series where job_id = {second.job_id}") == [(0,)]


def test_plan_reuses_finished_jobs_at_the_same_code(
    tmp_path: Path, pinned_segbench: provenance.GitState
) -> None:
    db = open_db(sqlite_url(tmp_path / "results.db"))
    suite = write_suite(tmp_path)
    try:
        recorder, specs = start(db, suite)
        ok, bad = recorder.plan(specs)
        recorder.record(ok.job_id, result(ok.spec))
        recorder.record(bad.job_id, result(bad.spec, ok=False, error="train: boom"))
        recorder.finish("failed")

        def plan(rerun: str) -> tuple[list[int], list[tuple[str, int | None]]]:
            rec, _ = start(db, suite)
            todo = rec.plan(specs, rerun)  # type: ignore[arg-type]
            with db.sessions() as s:
                rows = s.scalars(select(Job).where(Job.run_id == rec.run_id).order_by(Job.position)).all()
                states = [(j.status, j.source_job_id) for j in rows]
                ids = [j.id for j in rows]
            rec.finish("done")
            return [ids.index(p.job_id) for p in todo], states

        assert plan("none") == ([], [("cached", ok.job_id), ("cached", bad.job_id)])
        assert plan("failed") == ([1], [("cached", ok.job_id), ("pending", None)])
        assert plan("all") == ([0, 1], [("pending", None), ("pending", None)])
        # finishing a run with jobs never started says they were cut off
        last = db_rows(tmp_path / "results.db", "select status from jobs where run_id = 4 order by id")
        assert last == [("interrupted",), ("interrupted",)]

        # another suite name never reuses this one's jobs
        other = write_suite(tmp_path / "other", SUITE.replace("name: spine", "name: spine2"))
        rec, other_specs = start(db, other)
        assert len(rec.plan(other_specs)) == 2
    finally:
        db.close()


# --- provenance --------------------------------------------------------------------------


def test_run_records_git_state_of_the_suite_repository(
    tmp_path: Path, pinned_segbench: provenance.GitState
) -> None:
    repo = init_repo(tmp_path / "suite-repo")
    git(repo, "checkout", "-q", "-b", "ablation")
    write_suite(repo)
    commit_file(repo, "mymodels.py", "WIDTH = 4\n", "models")
    head = commit_file(repo, "suite.yaml", SUITE, "suite")
    db = open_db(sqlite_url(tmp_path / "results.db"))
    try:

        def record_one() -> Run:
            rec, specs = start(db, repo / "suite.yaml")
            for p in rec.plan(specs):
                rec.record(p.job_id, result(p.spec))
            rec.finish("done")
            with db.sessions() as s:
                run = s.get(Run, rec.run_id)
                assert run is not None
                return run

        clean = record_one()
        assert (clean.suite_commit, clean.suite_branch, clean.suite_dirty) == (head, "ablation", False)
        assert clean.environment["suite_git"]["root"] == str(repo.resolve())
        assert clean.environment["suite_git"]["commit"] == head
        assert clean.segbench_commit == pinned_segbench.commit
        assert clean.host == socket.gethostname()
        assert clean.python_version == platform.python_version()
        assert clean.torch_version == "9.9.9+test" and clean.cuda_version is None
        assert clean.command == "segbench run suite.yaml --devices cpu"

        # a modified tracked file makes the tree dirty: new code, so nothing is reused
        (repo / "mymodels.py").write_text("WIDTH = 8\n")
        dirty = record_one()
        assert (dirty.suite_commit, dirty.suite_dirty) == (head, True)
        assert dirty.code_id != clean.code_id
        assert db_rows(tmp_path / "results.db", f"select status from jobs where run_id = {dirty.id}") == [
            ("done",),
            ("done",),
        ]
        # two different dirty trees are different code too
        (repo / "mymodels.py").write_text("WIDTH = 12\n")
        assert record_one().code_id not in {clean.code_id, dirty.code_id}

        # back to the commit: clean again, and the first run's results are reused
        git(repo, "checkout", "-q", "--", "mymodels.py")
        again = record_one()
        assert (again.suite_dirty, again.code_id) == (False, clean.code_id)
        assert db_rows(tmp_path / "results.db", f"select status from jobs where run_id = {again.id}") == [
            ("cached",),
            ("cached",),
        ]
    finally:
        db.close()


def test_run_records_segbench_checkout_and_no_git_outside_a_repository(tmp_path: Path) -> None:
    db = open_db(sqlite_url(tmp_path / "results.db"))
    try:
        rec, _ = start(db, write_suite(tmp_path / "plain"))  # tmp is not inside a git repository
        with db.sessions() as s:
            run = s.get(Run, rec.run_id)
        assert run is not None
        assert (run.suite_commit, run.suite_branch, run.suite_dirty) == (None, None, None)
        segbench_head = git(REPO, "rev-parse", "HEAD")
        assert run.segbench_commit == segbench_head
        assert run.segbench_branch == git(REPO, "rev-parse", "--abbrev-ref", "HEAD")
        assert isinstance(run.segbench_dirty, bool)
        assert run.environment["segbench_git"]["root"] == str(REPO)
    finally:
        db.close()
