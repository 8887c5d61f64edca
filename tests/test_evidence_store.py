"""Per-image evidence through the real path: a job's evaluation → its JobResult → SQLite → a report.

A tiny model trains for two iterations and is evaluated on eight diagnostic
images (two trimap bands); the job is recorded with the store's ``Recorder``
into a real SQLite file and read back by the report query and by the
regression snapshot. The metrics recomputed from the stored counts must equal
the recorded ones exactly, and ``segbench show`` must summarise the evidence.
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import numpy as np
import pytest

from segbench.config import load_suite
from segbench.regress.snapshot import Target, load_snapshot
from segbench.report.query import load_report_data
from segbench.runner.backend import JobContext
from segbench.runner.pipeline import run_job
from segbench.store.db import open_db
from segbench.store.recorder import Recorder
from segbench.suite import expand
from tests.test_spine import segbench

SUITE = textwrap.dedent(
    """
    name: evidence
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 8, val_length: 8}
    models:
      - name: "tests.tinymodels:tiny_segnet"
        label: tiny
    stages: [train, eval]
    train: {iterations: 2, batch_size: 2, aux_weight: null}
    eval: {batch_size: 3, trimap_widths: [1, 3]}
    """
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The database file with one evaluated job, and that job's id."""
    root = tmp_path_factory.mktemp("evidence")
    (root / "suite.yaml").write_text(SUITE)
    loaded = load_suite(root / "suite.yaml")
    (spec,) = expand(loaded)
    result = run_job(spec, JobContext("cpu", root / "ckpt"))
    assert result.ok, result.traceback
    db = open_db(f"sqlite:///{root / 'r.db'}")
    recorder = Recorder(db)
    recorder.start_run(loaded, "test", {"torch": None, "cuda": None, "cudnn": None})
    (planned,) = recorder.plan([spec])
    recorder.record(planned.job_id, result)
    recorder.finish("done")
    db.close()
    return root / "r.db", planned.job_id


def test_stored_evidence_round_trips_and_recomputes_the_recorded_metrics(recorded: tuple[Path, int]) -> None:
    path, job_id = recorded
    with sqlite3.connect(path) as conn:
        ((images, classes, arrays, size),) = conn.execute(
            "select images, classes, arrays, length(data) from evidence where job_id = ?", (job_id,)
        ).fetchall()
    assert (images, classes) == (8, 7)  # the diagnostic dataset's classes
    controls = '"control@context_miou", "control@small_iou", "control@thin_iou"'
    assert arrays == f'["band@1", "band@3", {controls}, "counts"]'
    assert size < 8 * 3 * 7 * 4 * 6  # six compressed int32 arrays, not a row per number
    db = open_db(f"sqlite:///{path}", create=False)
    try:
        data = load_report_data(db)
        evidence = data.evidence[job_id]
        job = data.jobs.set_index("job_id").loc[job_id]
        for metric in (
            *("mIoU", "pixel_acc", "mean_acc", "fwIoU", "mean_f1", "trimap_miou@1", "trimap_miou@3"),
            *("context_miou", "small_iou", "thin_iou"),
        ):
            assert evidence.recompute(metric) == job[metric], metric
        assert evidence.per_image("mIoU").shape == (8, 3, 7)
        assert np.all(evidence.per_image("trimap_miou@1")[:, 1] <= evidence.per_image("mIoU")[:, 1])
        with db.sessions() as session:
            run = load_snapshot(session, Target("1", run_id=1))
        (only,) = run.jobs.values()
        assert only[0].evidence is not None and only[0].evidence.same_images(evidence)
    finally:
        db.close()


def test_show_prints_the_evidence_summary(recorded: tuple[Path, int]) -> None:
    path, job_id = recorded
    shown = segbench("show", str(job_id), "--db", f"sqlite:///{path}", cwd=path.parent, check=True)
    text = " ".join(shown.stdout.split())  # rich folds long lines
    assert "8 images × 7 classes, 1 seed (seed 0)" in text, shown.stdout
    controls = "control@context_miou, control@small_iou, control@thin_iou"
    assert f"arrays band@1, band@3, {controls}, counts" in text
