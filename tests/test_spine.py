"""End to end through the real CLI: suite → worker processes → SQLite → report.

These run `segbench` as a subprocess (the way users do), with real spawned
workers and a real SQLite file, on a tiny import-path model.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def segbench(
    *args: str, cwd: Path, check: bool = False, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    # One thread per worker: tiny models gain nothing from more, and the test machines are shared.
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEGBENCH_DB": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "segbench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"segbench {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


SUITE = textwrap.dedent(
    """
    name: spine
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 32, val_length: 4}
    models:
      - name: "tests.tinymodels:tiny_segnet"
        label: tiny
    variants:
      grid:
        width: [4, 8]
    stages: [complexity, latency, train, eval]
    train: {iterations: 3, batch_size: 2, aux_weight: null}
    eval: {batch_size: 2}
    measure: {input_size: [64, 64], warmup: 1, iters: 5, min_iters: 3, memory: false}
    report:
      labels: {width: channels}
      baseline: {width: 4}
    """
)


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "suite.yaml").write_text(SUITE)
    return tmp_path


def db_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.slow
def test_run_record_rerun_report(workspace: Path) -> None:
    db = workspace / "results" / "segbench.db"
    first = segbench("run", "suite.yaml", "--devices", "cpu", cwd=workspace, check=True)
    assert "2 ran, 0 reused, 0 failed" in first.stdout

    # every job done, with numbers from every stage and the hardware it ran on
    jobs = db_rows(db, "select id, status, device, hardware_id from jobs order by id")
    assert [(j[1], j[2]) for j in jobs] == [("done", "cpu"), ("done", "cpu")]
    assert all(j[3] is not None for j in jobs)
    names = {r[0] for r in db_rows(db, "select name from metrics where job_id = 1")}
    assert {"params", "macs", "latency_ms", "train_loss_final", "mIoU", "pixel_acc", "val_loss"} <= names
    samples = db_rows(db, "select samples from metrics where job_id = 1 and name = 'latency_ms'")[0][0]
    assert 3 <= len(json.loads(samples)) <= 5
    assert db_rows(db, "select count(*) from series where job_id = 1 and name = 'loss'")[0][0] == 1

    # provenance: suite text, versions, host, git state of segbench
    run = db_rows(db, "select suite_text, torch_version, python_version, host, code_id, status from runs")[0]
    assert run[0] == SUITE and run[1] and run[2] and run[3] and run[4] and run[5] == "done"

    # same suite, same commit: nothing re-runs, and the report is still complete
    again = segbench("run", "suite.yaml", "--devices", "cpu", cwd=workspace, check=True)
    assert "0 ran, 2 reused" in again.stdout
    statuses = db_rows(db, "select status, source_job_id from jobs where run_id = 2 order by id")
    assert statuses == [("cached", 1), ("cached", 2)]
    report = segbench("report", "--format", "markdown", cwd=workspace, check=True).stdout
    assert "| channels |" in report and "mIoU (%)" in report and "Δ mIoU (%)" in report
    assert "baseline" in report
    assert "Input 1×3×64×64" in report and "fvcore multiply-adds" in report

    # --rerun all measures again, as new jobs
    third = segbench(
        "run", "suite.yaml", "--devices", "cpu", "--rerun", "all", "--only", "width=8", cwd=workspace
    )
    assert third.returncode == 0, third.stderr
    assert "1 ran, 0 reused" in third.stdout

    rows = json.loads(segbench("report", "--format", "json", "--run", "1", cwd=workspace, check=True).stdout)[
        "rows"
    ]
    assert [r["width"] for r in rows] == [4, 8]
    assert all(0.0 <= r["mIoU"] <= 1.0 for r in rows)
    csv = segbench("report", "--format", "csv", "--run", "1", cwd=workspace, check=True).stdout
    assert csv.splitlines()[0].startswith("width,")

    shown = segbench("show", "1", cwd=workspace, check=True).stdout
    assert "resolved config" in shown and "latency_ms" in shown

    _every_report_format(workspace)


def _every_report_format(workspace: Path) -> None:
    """LaTeX, HTML, pivot views and plots from the same database, all without importing torch."""
    latex = _report_without_torch(workspace, "--format", "latex", "--run", "1")
    assert r"\toprule" in latex and r"\label{tab:spine}" in latex and "channels" in latex

    _report_without_torch(workspace, "--format", "html", "--run", "1", "--plots", "plots")
    page = (workspace / "reports" / "spine.html").read_text()
    assert "<table" in page and "<svg" in page and "http://" not in page.replace("http://www.w3.org", "")
    assert (workspace / "plots" / "accuracy_cost.png").stat().st_size > 1000

    pivot = _report_without_torch(workspace, "--pivot", "width", "--metric", "miou", "--run", "1")
    assert "| channels | mIoU (%) |" in pivot or "| width | mIoU (%) |" in pivot
    assert (
        len([line for line in pivot.splitlines() if line.startswith("| 4 ") or line.startswith("| 8 ")]) == 2
    )

    lone = segbench("report", "--metric", "mIoU", cwd=workspace)
    assert lone.returncode == 2 and "--metric and --columns go with --pivot" in lone.stderr
    unknown = segbench("report", "--pivot", "width", "--metric", "mIuO", cwd=workspace)
    assert unknown.returncode == 2 and "mIoU" in unknown.stderr


def _report_without_torch(workspace: Path, *args: str) -> str:
    """``segbench report ARGS`` in-process, asserting torch was never imported; returns stdout."""
    code = textwrap.dedent(
        f"""
        import sys
        from segbench.cli import main
        sys.argv = ["segbench", "report", *{list(args)!r}]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        assert "torch" not in sys.modules, "report imported torch"
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEGBENCH_DB": ""}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=workspace, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_failing_job_is_recorded_and_suite_goes_on(workspace: Path) -> None:
    text = SUITE.replace("width: [4, 8]", "fail: [null, train]").replace(
        "baseline: {width: 4}", "baseline: {fail: null}"
    )
    text = text.replace("labels: {width: channels}", "labels: {}")
    (workspace / "suite.yaml").write_text(text)
    proc = segbench("run", "suite.yaml", "--devices", "cpu", cwd=workspace)
    assert proc.returncode == 1
    jobs = db_rows(
        workspace / "results" / "segbench.db", "select status, error, traceback from jobs order by id"
    )
    assert jobs[0][0] == "done"
    assert jobs[1][0] == "failed"
    assert "train: RuntimeError: deliberate failure while training" in jobs[1][1]
    assert "Traceback" in jobs[1][2]
    # the failed job keeps the numbers of the stages before the failure
    names = db_rows(workspace / "results" / "segbench.db", "select name from metrics where job_id = 2")
    assert ("macs",) in names and ("mIoU",) not in names
    report = segbench("report", cwd=workspace, check=True).stdout
    assert "failed: " in report and "deliberate failure" in report


def _ignore_sigint() -> None:
    """What a script's background job inherits; the run must still stop on SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop", "backend"),
    [(signal.SIGINT, "local"), (signal.SIGTERM, "local"), (signal.SIGTERM, "ray")],
    ids=["SIGINT", "SIGTERM", "SIGTERM-ray"],  # ray.init installs a SIGTERM handler of its own
)
def test_ctrl_c_keeps_finished_jobs(workspace: Path, stop: signal.Signals, backend: str) -> None:
    # A short job first, then one that would train for hours: the signal always lands mid-run.
    text = SUITE.replace("width: [4, 8]", "width: [4]\n    train.iterations: [3, 1000000]")
    # every training forward leaves a 't': past the short job's 3, the long one is training
    trace = workspace / "trace.txt"
    text = text.replace("label: tiny", f"label: tiny\n    options: {{trace: '{trace}'}}")
    (workspace / "suite.yaml").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEGBENCH_DB": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "segbench", "run", "suite.yaml", "--devices", "cpu", "--backend", backend],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint,
        start_new_session=True,  # its own process group, so a failed test can clean up its workers
    )
    db = workspace / "results" / "segbench.db"
    deadline = time.monotonic() + 240
    seen_done = False
    while not seen_done and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                seen_done = db_rows(db, "select count(*) from jobs where status = 'done'")[0][0] >= 1
            except sqlite3.OperationalError:
                continue  # the schema is still being created
            # a stop before the long job trains would leave nothing to save: wait for its first step
            seen_done = seen_done and trace.exists() and trace.read_text().count("t") > 3
    if not seen_done:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        raise AssertionError(f"no job was recorded done while the run went on\n{out}\n{err}")
    proc.send_signal(stop)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # it ignored the signal: do not leave it or its workers training
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    statuses = [r[0] for r in db_rows(db, "select status from jobs order by id")]
    assert statuses.count("done") >= 1
    assert "interrupted" in statuses
    assert db_rows(db, "select status from runs")[0][0] == "interrupted"
    # the long training had no periodic checkpoint: the stop made it save the step it had reached
    states = [torch.load(f, weights_only=True) for f in (workspace / "results").glob("checkpoints/*/*.pt")]
    (stopped,) = [s for s in states if s["fingerprint"]["iterations"] == 1000000]
    assert 0 < stopped["iteration"] < 1000000
    # resuming runs only what is left
    resumed = segbench(
        "run", "suite.yaml", "--devices", "cpu", "--only", "*iterations=3", cwd=workspace, check=True
    )
    assert "0 ran, 1 reused" in resumed.stdout


def test_bad_suite_exits_2_with_location(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(SUITE.replace("stages:", "stagess:"))
    proc = segbench("run", "bad.yaml", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "bad.yaml:12: stagess: unknown field 'stagess' (did you mean 'stages'?)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dry_run_prints_jobs_without_running(workspace: Path) -> None:
    proc = segbench("run", "suite.yaml", "--dry-run", cwd=workspace, check=True)
    assert "spine: 2 job(s)" in proc.stdout
    assert not (workspace / "results").exists()


def test_run_at_refuses_dry_run_and_bad_revisions(workspace: Path) -> None:
    dry = segbench("run", "suite.yaml", "--at", "HEAD", "--dry-run", cwd=workspace)
    assert dry.returncode == 2 and "drop --dry-run" in dry.stderr
    empty = segbench("run", "suite.yaml", "--at", "HEAD,,main", cwd=workspace)
    assert empty.returncode == 2 and "comma-separated revisions" in empty.stderr


def test_report_on_missing_db_is_a_clear_error(tmp_path: Path) -> None:
    proc = segbench("report", "--db", f"sqlite:///{tmp_path}/none.db", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no results database" in proc.stderr


def test_help_list_and_report_do_not_import_torch(workspace: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from typer.testing import CliRunner
        from segbench.cli import app
        r = CliRunner()
        for args in (["--help"], ["list", "models"], ["list", "datasets"], ["list", "suites"]):
            res = r.invoke(app, args)
            assert res.exit_code == 0, (args, res.output)
        assert "torch" not in sys.modules, "torch was imported"
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_quickstart_suite_end_to_end_at_tiny_size(tmp_path: Path) -> None:
    """The README's suite itself, shrunk: PSPNet-SqueezeNet with and without the PPM, its table."""
    import yaml

    suite = yaml.safe_load((REPO / "suites" / "quickstart.yaml").read_text())
    suite["datasets"][0]["options"] = {"size": 64, "train_length": 8, "val_length": 2}
    suite["train"].update(iterations=2, batch_size=2, crop_size=64)
    suite["eval"]["batch_size"] = 2
    suite["measure"].update(input_size=[64, 64], warmup=1, iters=3, min_iters=3)
    (tmp_path / "quickstart.yaml").write_text(yaml.safe_dump(suite, allow_unicode=True))

    ran = segbench("run", "quickstart.yaml", "--devices", "cpu", cwd=tmp_path, check=True)
    assert "2 ran, 0 reused, 0 failed" in ran.stdout
    report = segbench("report", "--format", "markdown", cwd=tmp_path, check=True).stdout
    header = (
        "| pyramid pooling | mIoU (%) | context mIoU (%) | small-object IoU (%) | thin IoU (%) | pixel acc (%) "
        "| params (M) | GFLOPs | latency (ms) | Δ context mIoU (%) | Δ mIoU (%) |"
    )
    assert header in report
    rows = [line for line in report.splitlines() if line.startswith("| ✓ ") or line.startswith("|   ")]
    assert len(rows) == 2 and rows[1].endswith("| baseline |")
    # the PPM adds 4 levels of 1×1 conv (512 → 128) and widens the head's 3×3 conv: more params
    params = [float(row.split("|")[7].strip(" *")) for row in rows]
    assert params[0] > params[1]
