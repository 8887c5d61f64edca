"""The results database on a real PostgreSQL server, started for these tests (``tests/pg.py``).

Skipped only when the server binaries are not installed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from segbench.errors import UserError
from segbench.store.db import open_db
from segbench.store.schema import Base, Job, Metric, Run
from tests.test_spine import SUITE, segbench
from tests.test_store import alembic_head, result, start, write_suite

pytestmark = pytest.mark.postgres


def test_postgres_database_is_migrated_to_head_and_guarded(pg_url: str) -> None:
    db = open_db(pg_url)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("select version_num from alembic_version")).scalars().all() == [
                alembic_head()
            ]
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        db.close()
    open_db(pg_url, create=False).close()  # again: already at head

    db = open_db(pg_url)
    with db.engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = '9999_from_the_future'"))
    db.close()
    with pytest.raises(UserError, match="'9999_from_the_future'.*newer"):
        open_db(pg_url)


def test_postgres_records_and_refuses_to_overwrite(pg_url: str, tmp_path: Path) -> None:
    db = open_db(pg_url)
    try:
        recorder, specs = start(db, write_suite(tmp_path))
        first, _ = recorder.plan(specs)
        res = result(first.spec, miou=0.25)
        res.add("latency_ms", 3.5, "latency", samples=[3.0, 3.5, 4.0], extra={"cv": 0.1, "noisy": True})
        recorder.record(first.job_id, res)
        recorder.record(first.job_id, result(first.spec, miou=0.75))  # a second result: the first stands
        recorder.finish("done")
        with db.sessions() as s:
            got = {m.name: (m.value, m.unit, m.samples, m.extra) for m in s.scalars(select(Metric))}
            assert got == {
                "mIoU": (0.25, "fraction", None, None),
                "latency_ms": (3.5, "ms", [3.0, 3.5, 4.0], {"cv": 0.1, "noisy": True}),
            }
            assert s.get(Job, first.job_id).status == "done"  # type: ignore[union-attr]
    finally:
        db.close()


@pytest.mark.slow
def test_suite_runs_end_to_end_into_postgres_and_reruns_from_cache(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(SUITE)
    first = segbench("run", "suite.yaml", "--db", pg_url, "--devices", "cpu", cwd=tmp_path, check=True)
    assert "2 ran, 0 reused, 0 failed" in first.stdout
    assert re.sub(r"\s+", "", pg_url) in re.sub(r"\s+", "", first.stdout)  # rich may wrap the URL

    def report() -> list[dict]:
        out = segbench("report", "--format", "json", "--db", pg_url, cwd=tmp_path, check=True).stdout
        return json.loads(out)["rows"]

    rows = report()
    assert [(r["width"], r["status"]) for r in rows] == [(4, "done"), (8, "done")]
    assert all(0.0 <= r["mIoU"] <= 1.0 and r["params"] > 0 and r["latency_ms"] > 0 for r in rows)

    again = segbench("run", "suite.yaml", "--db", pg_url, "--devices", "cpu", cwd=tmp_path, check=True)
    assert "0 ran, 2 reused, 0 failed" in again.stdout
    assert report() == rows  # the latest run reports the numbers it reused

    db = open_db(pg_url, create=False)
    try:
        with db.sessions() as s:
            runs = s.scalars(select(Run).order_by(Run.id)).all()
            assert [r.status for r in runs] == ["done", "done"]
            assert runs[0].suite_text == SUITE and runs[0].torch_version
            done, cached = ([(j.id, j.status, j.source_job_id) for j in r.jobs] for r in runs)
            assert [j[1:] for j in done] == [("done", None), ("done", None)]
            assert [j[1:] for j in cached] == [("cached", done[0][0]), ("cached", done[1][0])]
            latency = s.scalars(
                select(Metric).where(Metric.job_id == done[0][0], Metric.name == "latency_ms")
            ).one()
            assert latency.unit == "ms" and 3 <= len(latency.samples or []) <= 5
    finally:
        db.close()
