"""``db merge``: another machine's database into this one, ids remapped, never twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from segbench.errors import UserError
from segbench.regress.cli import register
from segbench.regress.snapshot import Target, load_snapshot
from segbench.store.db import Database, open_db
from segbench.store.merge import merge_databases
from segbench.store.schema import Artifact, Hardware, Job, Metric, Run, Series
from tests.test_regress_support import FakeJob, record_run, samples

C1, C2 = "1" * 40, "2" * 40


def counts(db: Database) -> dict[str, int]:
    with db.sessions() as s:
        return {
            model.__tablename__: s.scalar(select(func.count()).select_from(model)) or 0
            for model in (Run, Job, Metric, Series, Artifact, Hardware)
        }


@pytest.fixture()
def here(tmp_path: Path) -> Database:
    db = open_db(f"sqlite:///{tmp_path / 'here.db'}")
    record_run(db, C1, [FakeJob("a" * 16, {"mIoU": 0.5}, hardware="hw-a")])
    return db


@pytest.fixture()
def there(tmp_path: Path) -> Database:
    """The other machine: its ids overlap ours, it shares one machine key, and it has a cached job."""
    db = open_db(f"sqlite:///{tmp_path / 'there.db'}")
    record_run(db, C1, [FakeJob("x" * 16, {"mIoU": 0.9}, hardware="hw-a")])  # job 1, like ours
    evidence = np.stack([np.full(4, 70), np.full(4, 100), np.full(4, 70)], axis=1)[:, :, None]  # mIoU 0.7
    (source,) = record_run(
        db,
        C1,
        [
            FakeJob(
                "b" * 16,
                {"mIoU": 0.7, "latency_ms": samples(5.0)},
                hardware="hw-b",
                evidence=evidence,
                rounds={"latency_ms": [samples(5.1), samples(4.9)]},
            )
        ],
    )
    record_run(db, C1, [FakeJob("b" * 16, status="cached", source_job_id=source)])
    record_run(
        db, C2, [FakeJob("b" * 16, {"mIoU": 0.1}, hardware="hw-b", status="running")], status="running"
    )
    with db.session() as s:
        s.add(Series(job_id=source, name="loss", steps=[1, 2], values=[1.0, 0.5]))
        s.add(Artifact(job_id=source, name="sample_0.png", media_type="image/png", data=b"\x89PNG"))
    return db


def test_merge_copies_remaps_and_is_idempotent(here: Database, there: Database) -> None:
    summary = merge_databases(here, there)
    assert (summary.runs_added, summary.runs_present, summary.jobs_added, summary.hardware_added) == (
        3,
        0,
        3,
        1,
    )
    assert summary.metrics_added == 3 and len(summary.runs_in_progress) == 1
    assert counts(here) == {"runs": 4, "jobs": 4, "metrics": 4, "series": 1, "artifacts": 1, "hardware": 2}
    with here.sessions() as s:
        cached = s.scalars(select(Job).where(Job.status == "cached")).one()
        source = s.get(Job, cached.source_job_id)
        assert source is not None and source.job_key == "b" * 16 and source.id != 2  # remapped, not copied
        assert {m.name: m.value for m in source.metrics}["mIoU"] == pytest.approx(0.7)
        assert source.hardware is not None and source.hardware.key == "hw-b"
        assert s.scalars(select(Hardware.key)).all() == ["hw-a", "hw-b"]
        # the merged history answers questions: the cached job stands for its source
        snap = load_snapshot(s, Target(C1, commit=C1))
        timed = snap.latest("b" * 16).metrics["latency_ms"]
        assert timed.samples == pytest.approx(tuple(samples(5.0)))
        assert timed.rounds is not None and len(timed.rounds) == 3  # the timing rounds travelled too
        merged = snap.latest("b" * 16).evidence  # the per-image evidence travelled with its job
        assert merged is not None and merged.images == 4 and merged.recompute("mIoU") == pytest.approx(0.7)
    before = counts(here)
    again = merge_databases(here, there)
    assert (again.runs_added, again.runs_present, again.jobs_added) == (0, 3, 0)
    assert counts(here) == before


def test_a_later_run_can_point_into_a_run_merged_before(here: Database, there: Database) -> None:
    merge_databases(here, there)
    with there.sessions() as s:
        source = s.scalars(select(Job).where(Job.job_key == "b" * 16, Job.status == "done")).one().id
    record_run(there, C1, [FakeJob("b" * 16, status="cached", source_job_id=source)])
    assert merge_databases(here, there).runs_added == 1
    with here.sessions() as s:
        newest = s.scalars(select(Job).order_by(Job.id.desc())).first()
        assert newest is not None and newest.status == "cached"
        target = s.get(Job, newest.source_job_id)
        assert target is not None and target.job_key == "b" * 16 and target.status == "done"


def test_merge_refuses_itself_and_missing_files(here: Database, tmp_path: Path) -> None:
    alias = open_db(f"sqlite:///{tmp_path}/./here.db")
    with pytest.raises(UserError, match="is this database"):
        merge_databases(here, alias)
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["db", "merge", str(tmp_path / "nope.db"), "--db", here.url])
    assert isinstance(result.exception, UserError) and "no such database file" in str(result.exception)


def test_merge_command_takes_a_path(here: Database, there: Database, tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["db", "merge", str(tmp_path / "there.db"), "--db", here.url])
    assert result.exit_code == 0, result.output
    assert "3 run(s) added (3 jobs, 3 metrics), 0 already here, 1 new machine(s)" in result.output
    assert "1 run(s) still in progress were left for a later merge" in result.output
