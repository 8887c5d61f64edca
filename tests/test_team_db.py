"""A team on one PostgreSQL server: drivers writing at once, readers meanwhile, a server restart.

The server is real (``tests/pg.py``). Three real ``segbench run`` write one
database at once: two on one suite (the claims make one of them wait and reuse
the other's results) and one on another suite; ``segbench report`` reads it the
whole time. Then a run whose server is stopped (``pg_ctl stop -m fast``: every
connection cut) while its jobs train, and started again seconds later on the
same port, must record every result and end ``done``. See docs/cluster.md.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from segbench.store.db import open_db
from segbench.store.schema import Claim, Job, Metric, Run
from tests.pg import PgServer
from tests.test_reliability import finish, launch
from tests.test_spine import segbench

pytestmark = pytest.mark.postgres

SUITE = textwrap.dedent(
    """
    name: NAME
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 16, val_length: 4}
    models:
      - name: "tests.tinymodels:tiny_segnet"
        label: tiny
        options: {sleep: SLEEP, trace: TRACE}
    variants:
      grid:
        width: [4, 6]
    stages: [train, eval]
    train: {iterations: ITERATIONS, batch_size: 2, aux_weight: null}
    eval: {batch_size: 2}
    """
)


def write_suite(workspace: Path, name: str, iterations: int = 4, sleep: float = 0.0) -> Path:
    """A two-job suite called ``name``; its model leaves a ``t`` per training step in ``trace_NAME``."""
    trace = workspace / f"trace_{name}"
    text = SUITE.replace("NAME", name).replace("ITERATIONS", str(iterations))
    (workspace / f"{name}.yaml").write_text(text.replace("SLEEP", str(sleep)).replace("TRACE", str(trace)))
    return trace


def recorded(url: str) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, int]], int]:
    """(suite, status) per run; (suite, job key, status, metric count) per job; claims left."""
    db = open_db(url, create=False)
    try:
        with db.sessions() as s:
            runs = [(r.suite_name, r.status) for r in s.scalars(select(Run).order_by(Run.id))]
            metrics = dict(s.execute(select(Metric.job_id, func.count()).group_by(Metric.job_id)).all())
            jobs = [
                (run.suite_name, job.job_key, job.status, metrics.get(job.id, 0))
                for job, run in s.execute(select(Job, Run).join(Run).order_by(Job.id)).all()
            ]
            claims = len(s.scalars(select(Claim)).all())
    finally:
        db.close()
    return runs, jobs, claims


@pytest.mark.slow
def test_three_drivers_write_one_postgres_while_it_is_read(tmp_path: Path, pg_url: str) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # the journal of a server database lives here
    write_suite(tmp_path, "alpha", iterations=6, sleep=0.02)
    write_suite(tmp_path, "beta", iterations=6, sleep=0.02)
    args = ("--devices", "cpu", "--db", pg_url)
    drivers = [
        launch("run", "alpha.yaml", *args, cwd=tmp_path, env=env),
        launch("run", "beta.yaml", *args, cwd=tmp_path, env=env),
        launch("run", "alpha.yaml", *args, cwd=tmp_path, env=env),  # the same suite: claims
    ]
    reads: list[subprocess.CompletedProcess[str]] = []
    comparisons: list[subprocess.CompletedProcess[str]] = []

    def read_while_they_write() -> None:
        while any(d.poll() is None for d in drivers):
            reads.append(segbench("report", "--format", "json", "--db", pg_url, cwd=tmp_path))
            # alpha's two runs (ids 1 and 2 or 1 and 3: whichever exist), compared mid-write
            comparisons.append(segbench("compare", "1", "2", "--allow-dirty", "--db", pg_url, cwd=tmp_path))
            time.sleep(0.5)

    reader = threading.Thread(target=read_while_they_write)
    reader.start()
    outcomes = [finish(d) for d in drivers]
    reader.join(timeout=120)
    for rc, out, err in outcomes:
        assert rc == 0, out + err
    # every read while they wrote succeeded (before the first run is recorded there is nothing to read)
    answered = [r for r in reads if "nothing recorded yet" not in r.stderr]
    assert answered, [r.stderr for r in reads]
    assert all(r.returncode == 0 for r in answered), [r.stderr for r in answered if r.returncode]
    assert all(json.loads(r.stdout)["rows"] is not None for r in answered)
    # a comparison mid-write answers, or says clearly what it cannot compare yet (exit 2): never a crash
    assert comparisons
    for c in comparisons:
        assert c.returncode in (0, 1, 2) and "Traceback" not in c.stderr, c.stdout + c.stderr
        assert c.returncode != 2 or "error" in c.stderr.lower(), c.stderr

    runs, jobs, claims = recorded(pg_url)
    assert sorted(runs) == [("alpha", "done"), ("alpha", "done"), ("beta", "done")]
    assert claims == 0
    assert len(jobs) == 6  # no job row lost or added
    done = [(suite, key, count) for suite, key, status, count in jobs if status == "done"]
    # each experiment trained once: alpha's second driver reused the first one's results
    assert sorted((suite, key) for suite, key, _ in done) == sorted({(s, k) for s, k, _, _ in jobs})
    assert sorted(status for _, _, status, _ in jobs) == ["cached", "cached", "done", "done", "done", "done"]
    # every done job has all of its metrics, once (one row per name is also a unique constraint)
    counts = {count for _, _, count in done}
    assert len(counts) == 1 and counts.pop() > 0, done

    # and reading them back after: both suites' reports, and a comparison of alpha's two runs
    for suite in ("alpha", "beta"):
        report = segbench("report", "--suite", suite, "--format", "json", "--db", pg_url, cwd=tmp_path)
        assert report.returncode == 0 and [r["status"] for r in json.loads(report.stdout)["rows"]] == [
            "done",
            "done",
        ], report.stderr
    ids = [str(i) for i, (suite, _) in enumerate(runs, start=1) if suite == "alpha"]
    compared = segbench("compare", *ids, "--suite", "alpha", "--allow-dirty", "--db", pg_url, cwd=tmp_path)
    assert compared.returncode == 0, compared.stdout + compared.stderr


@pytest.mark.slow
def test_a_server_restart_mid_run_costs_no_result(tmp_path: Path, pg_server: PgServer) -> None:
    url = pg_server.new_database()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    # the first job's result arrives while the server is down: 30 steps of 0.1 s, stopped at the 20th
    trace = write_suite(tmp_path, "restart", iterations=30, sleep=0.1)
    driver = launch(
        "run", "restart.yaml", "--devices", "cpu", "--workers", "1", "--db", url, cwd=tmp_path, env=env
    )
    deadline = time.monotonic() + 120
    while not (trace.exists() and trace.read_text().count("t") >= 20):
        assert driver.poll() is None and time.monotonic() < deadline, finish(driver)
        time.sleep(0.1)
    pg_server.stop()
    try:
        time.sleep(4)
    finally:
        pg_server.start()
    rc, out, err = finish(driver)
    assert rc == 0, out + err
    assert "2 ran, 0 reused, 0 failed" in out, out + err
    runs, jobs, claims = recorded(url)
    assert runs == [("restart", "done")] and claims == 0
    assert [status for _, _, status, _ in jobs] == ["done", "done"]
    assert len({count for _, _, _, count in jobs}) == 1 and jobs[0][3] > 0
    assert not list((tmp_path / "cache").glob("segbench/journals/*.jsonl"))  # nothing left waiting
