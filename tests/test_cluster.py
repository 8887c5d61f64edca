"""A real two-node Ray cluster on this machine that loses a node mid-training (docs/cluster.md).

A head and a second node are started as separate ``ray start --block``
processes, one CPU each, so the suite's two training groups run one on each
node. While both train, every process of the second node (its ``ray start``,
raylet, agents and the task's worker) is killed with SIGKILL. The run must end
``done`` with every job recorded once, the lost group retried on the head and
resumed from its last periodic checkpoint on the shared ``--workdir`` (not from
iteration 0), and numbers equal to an uninterrupted one-node run. Every process
started here is killed by pid at the end (``ray stop`` would stop every Ray
instance on the machine, other users' too).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from segbench.errors import UserError
from segbench.lifeline import children
from segbench.runner.backend import Event, RetryPolicy
from segbench.runner.recording import RecordingListener, RunSummary
from segbench.store.db import open_db
from segbench.store.schema import Job, Metric
from tests.test_spine import REPO, segbench
from tests.test_store import result, start, write_suite

RAY = Path(sys.executable).with_name("ray")
#: every process of the cluster and its driver: the test's own Ray token, so that a token another
#: Ray user left in ~/.ray/auth_token (``ray get-auth-token --generate``) is neither needed nor used
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO),
    "SEGBENCH_DB": "",
    "OMP_NUM_THREADS": "1",
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(16),
}

#: two training groups (one per model), each with an evaluation-only twin that loads its checkpoint;
#: 60 slow steps, a checkpoint every 5, so a kill mid-training leaves one to resume from
SUITE = textwrap.dedent(
    """
    name: cluster
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 16, val_length: 4}
    models:
      - name: "tests.tinymodels:tiny_segnet"
        label: a
        options: {width: 4, sleep: 0.05, trace: TRACE_a}
      - name: "tests.tinymodels:tiny_segnet"
        label: b
        options: {width: 6, sleep: 0.05, trace: TRACE_b}
    variants:
      grid:
        eval.flip: [false, true]
    stages: [train, eval]
    train: {iterations: 60, batch_size: 2, aux_weight: null, checkpoint_every: 5}
    eval: {batch_size: 2}
    """
)
#: timings differ from run to run (and resumed_from is the point); every other number must not
TIMINGS = ("train_seconds", "train_images_per_s", "eval_images_per_s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    found, todo = [], children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children(child)
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Node:
    """One ``ray start --block`` process: its own session; its raylet, agents and workers below it."""

    name: str
    proc: subprocess.Popen[str]
    seen: set[int] = field(default_factory=set)

    def pids(self) -> list[int]:
        """The node's processes now (and every one seen before, for the clean-up)."""
        now = [self.proc.pid, *_descendants(self.proc.pid)]
        self.seen.update(now)
        return now


def _start_node(name: str, *args: str, temp_dir: str | None = None) -> Node:
    command = [
        str(RAY), "start", *args, "--num-cpus", "1", "--node-name", name, "--block",
        "--disable-usage-stats", "--min-worker-port", "0", "--max-worker-port", "0",
        "--dashboard-agent-listen-port", str(_free_port()),
    ]  # fmt: skip
    if temp_dir is not None:
        command.append(f"--temp-dir={temp_dir}")
    proc = subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    node = Node(name, proc)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:  # ray start prints this once its raylet has registered with the head
        lines.append(line)
        if "Ray runtime started" in line:
            break
    else:
        raise AssertionError(f"ray start {name} ended ({proc.wait()}):\n{''.join(lines)}")
    # keep reading, so a full pipe never blocks it
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    node.pids()
    return node


@dataclass
class Cluster:
    address: str
    head: Node
    second: Node


@pytest.fixture()
def cluster() -> Iterator[Cluster]:
    """A head and a second node, one CPU each, in processes of their own; all killed by pid after."""
    pytest.importorskip("ray", reason="the cluster tests need Ray (pip install 'segbench[ray]')")
    if not RAY.exists():
        pytest.skip(f"the Ray command line ({RAY}) is not installed")
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="sbray-")  # short: Ray's socket paths live under it
    nodes: list[Node] = []
    try:
        nodes.append(
            _start_node("head", "--head", f"--port={port}", "--include-dashboard=false", temp_dir=temp_dir)
        )
        nodes.append(_start_node("second", f"--address=127.0.0.1:{port}"))
        yield Cluster(f"127.0.0.1:{port}", nodes[0], nodes[1])
    finally:
        for node in nodes:
            node.pids()
            _kill(sorted(node.seen))
            node.proc.wait(timeout=30)
        _kill(_stragglers(temp_dir))


def _stragglers(temp_dir: str) -> list[int]:
    """Processes of this cluster that left the tree of their ``ray start`` (their command names its session)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as fh:
                if temp_dir.encode() in fh.read():
                    found.append(int(entry))
    return found


def _rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return conn.execute(sql, args).fetchall()


def _numbers(db: Path) -> dict[str, object]:
    """label -> every metric (value and samples) and curve of its job, timings left out."""
    numbers: dict[str, dict[str, object]] = {}
    for label, name, value, samples in _rows(
        db, "select j.label, m.name, m.value, m.samples from metrics m join jobs j on j.id = m.job_id"
    ):
        if name not in TIMINGS:
            numbers.setdefault(label, {})[name] = (value, samples)
    for label, name, steps, values in _rows(
        db, 'select j.label, s.name, s.steps, s."values" from series s join jobs j on j.id = s.job_id'
    ):
        numbers.setdefault(label, {})[f"series:{name}"] = (steps, values)
    return numbers


def _utc(at: str) -> float:
    return datetime.fromisoformat(at).replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.slow
def test_a_group_lost_with_its_node_resumes_on_the_survivor_and_is_recorded_once(
    tmp_path: Path, cluster: Cluster
) -> None:
    text = SUITE
    for model in "ab":
        text = text.replace(f"TRACE_{model}", str(tmp_path / f"trace_{model}"))
    (tmp_path / "suite.yaml").write_text(text)
    # the one-node run to compare with: the local pool, one worker of one thread, as each Ray node
    reference = tmp_path / "reference.db"
    straight = segbench(
        "run", "suite.yaml", "--devices", "cpu", "--workers", "1", "--db", f"sqlite:///{reference}",
        "--workdir", "one-node", cwd=tmp_path,
    )  # fmt: skip
    assert straight.returncode == 0, straight.stdout + straight.stderr
    for model in "ab":
        (tmp_path / f"trace_{model}").unlink()

    db = tmp_path / "cluster.db"
    driver = subprocess.Popen(
        [
            sys.executable, "-m", "segbench", "run", "suite.yaml", "--backend", "ray", "--ray-address",
            cluster.address, "--devices", "cpu", "--db", f"sqlite:///{db}", "--workdir", "shared",
            "--retry-delay", "1",
        ],
        cwd=tmp_path, env={**ENV, "COLUMNS": "400"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    heard: list[tuple[float, str]] = []  # (when, line) of the driver's output
    reader = threading.Thread(
        target=lambda: heard.extend((time.time(), line) for line in driver.stdout),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        # both groups training, one on each node; the second node's one past two checkpoints
        deadline = time.monotonic() + 120
        victim = None
        while victim is None:
            assert driver.poll() is None and time.monotonic() < deadline, "".join(line for _, line in heard)
            time.sleep(0.2)
            try:
                running = dict(_rows(db, "select device, label from jobs where status = 'running'"))
            except sqlite3.OperationalError:
                continue  # not created yet
            if set(running) == {"cpu@head", "cpu@second"}:
                model = running["cpu@second"].split()[0]
                trace = tmp_path / f"trace_{model}"
                if trace.exists() and trace.read_text().count("t") >= 15:
                    victim = running["cpu@second"]
        killed_at = time.time()
        _kill(cluster.second.pids())

        driver.wait(timeout=150)
        reader.join(timeout=10)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.communicate()
    log = "".join(line for _, line in heard)
    assert driver.returncode == 0, log
    assert "4 ran, 0 reused, 0 failed" in log, log
    assert f"retry {victim}: Ray task lost (NodeDiedError" in log, log
    assert [s for (s,) in _rows(db, "select status from runs")] == ["done"]

    # every job recorded once, done, on the head in the end; no metric twice (also a unique constraint)
    jobs = _rows(db, "select id, label, status, device, job_key, started_at from jobs order by id")
    assert [status for _, _, status, _, _, _ in jobs] == ["done"] * 4
    assert len({key for _, _, _, _, key, _ in jobs}) == 4
    (lost_job,) = [j for j in jobs if j[1] == victim]
    assert lost_job[3] == "cpu@head"
    assert _rows(db, "select count(*) from metrics where name = 'mIoU'") == [(4,)]

    # resumed from its last periodic checkpoint, not from iteration 0; its twin loaded the finished one
    resumed = {
        label: json.loads(extra)["resumed_from"]
        for label, extra in _rows(
            db, "select j.label, m.extra from metrics m join jobs j on j.id = m.job_id "
            "where m.name = 'train_seconds'",
        )
    }  # fmt: skip
    assert 10 <= resumed[victim] < 60 and resumed[victim] % 5 == 0, resumed
    survivor_group = [label for label in resumed if not label.startswith(victim.split()[0])]
    assert all(resumed[label] in (0, 60) for label in survivor_group), resumed

    # the numbers of an uninterrupted one-node run, curves included
    assert _numbers(db) == _numbers(reference)

    noticed = next(when for when, line in heard if "retry" in line)
    print(
        f"\nnode killed → retry noticed: {noticed - killed_at:.2f}s; "
        f"→ resumed attempt started on the head: {_utc(lost_job[5]) - killed_at:.2f}s "
        f"(it waits for the head's one CPU); resumed from iteration {resumed[victim]} of 60"
    )


class _Quiet:
    """A run view that only counts what it is told."""

    def __init__(self) -> None:
        self.settled_count = 0

    def settled(self) -> None:
        self.settled_count += 1

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


def test_the_writer_records_one_result_per_job_whatever_arrives_twice(tmp_path: Path) -> None:
    """A lost attempt's late events and a second result (a retry, a replay) never change a record."""
    db = open_db(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        recorder, specs = start(db, write_suite(tmp_path))
        planned = recorder.plan(specs)
        job = planned[0]
        view = _Quiet()
        listener = RecordingListener(recorder, planned, RunSummary(recorder.run_id or 0, len(planned)), view)
        listener.on_event(Event("start", 0, job.job_id, device="cpu@second"))
        listener.on_event(Event("retry", 0, job.job_id, detail="node lost", attempt=2))
        listener.on_event(Event("start", 0, job.job_id, device="cpu@head", attempt=2))
        listener.on_event(Event("start", 0, job.job_id, device="cpu@second"))  # the lost attempt, late
        with db.sessions() as s:
            assert s.get(Job, job.job_id).device == "cpu@head"  # type: ignore[union-attr]
        listener.on_event(Event("result", 0, job.job_id, result=result(job.spec, miou=0.7), attempt=2))
        listener.on_event(Event("result", 0, job.job_id, result=result(job.spec, miou=0.1), attempt=2))
        recorder.record(job.job_id, result(job.spec, ok=False, error="late"))  # below the listener too
        with db.sessions() as s:
            row = s.get(Job, job.job_id)
            assert row is not None and (row.status, row.device) == ("done", "cpu")
            values = s.scalars(select(Metric.value).where(Metric.job_id == job.job_id)).all()
        assert values == [0.7]
        assert view.settled_count == 1 and listener.summary.ran == 1
    finally:
        db.close()


def test_retry_policy_waits_double_each_time_and_refuses_nonsense() -> None:
    policy = RetryPolicy(retries=3, delay=2.0)
    assert [policy.wait_before(n) for n in (2, 3, 4)] == [2.0, 4.0, 8.0]
    assert RetryPolicy(retries=9, delay=50).wait_before(5) == 60.0  # at most a minute
    for bad in ({"retries": -1}, {"delay": -1.0}, {"delay": float("nan")}):
        with pytest.raises(UserError):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def test_retry_options_are_checked_before_anything_is_recorded(tmp_path: Path) -> None:
    write_suite(tmp_path)
    for args, message in (
        (["--retries", "1"], "--retries and --retry-delay go with --backend ray"),
        (["--backend", "ray", "--retries", "-1"], "--retries -1: expected 0 (no retry) or more"),
        (["--backend", "ray", "--retry-delay", "-2"], "--retry-delay -2.0: expected a number of seconds"),
    ):
        refused = segbench("run", "suite.yaml", "--devices", "cpu", *args, cwd=tmp_path)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert not (tmp_path / "results").exists()
