"""Fault injection: kill a real ``segbench run`` at chosen moments; no worker may outlive it.

The driver runs as a subprocess in a session of its own; its workers (and their
DataLoader workers) are found in ``/proc`` before the kill. A ``kill -9`` gives
the driver no chance to stop them: they must notice and die on their own. A
SIGHUP (a closed ssh session) is a clean stop: the training in flight saves its
checkpoint at the iteration it reached, and the next run continues from there to
the very numbers of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from segbench.lifeline import children

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "SEGBENCH_DB": "", "OMP_NUM_THREADS": "1"}

#: one training job (and its evaluation) slow enough to be caught mid-way; the augmentation draws
#: nothing random, so a DataLoader worker (num_workers 1) keeps a resumed run bit-identical
TRAIN_SUITE = textwrap.dedent(
    """
    name: faults
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 16, val_length: 4}
    models:
      - name: "tests.tinymodels:tiny_segnet"
        label: tiny
        options: {width: 4, sleep: 0.03, trace: TRACE}
    stages: [train, eval]
    train:
      iterations: 80
      batch_size: 2
      aux_weight: null
      scale_range: [1.0, 1.0]
      hflip: false
      num_workers: 1
      checkpoint_every: CHECKPOINT_EVERY
    eval: {batch_size: 2}
    """
)

LATENCY_SUITE = textwrap.dedent(
    """
    name: faults-latency
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 4, val_length: 2}
    models:
      - name: "tests.tinymodels:tiny_segnet"
        label: tiny
        options: {width: 4, sleep: 0.05, trace: TRACE}
    stages: [latency]
    measure: {input_size: [64, 64], warmup: 1, iters: 5000, min_iters: 5000, memory: false}
    """
)

#: timings differ from run to run; every other number must not
TIMINGS = ("train_seconds", "train_images_per_s", "eval_images_per_s")


def _write_suite(workspace: Path, text: str, checkpoint_every: int = 0) -> Path:
    workspace.mkdir(parents=True, exist_ok=True)
    trace = workspace / "trace"
    text = text.replace("TRACE", str(trace)).replace("CHECKPOINT_EVERY", str(checkpoint_every))
    (workspace / "suite.yaml").write_text(text)
    return trace


def _start(workspace: Path, *args: str, terminal: Terminal | None = None) -> subprocess.Popen[bytes]:
    with open(workspace / "out.log", "ab") as log:
        out = terminal.slave if terminal is not None else log
        proc = subprocess.Popen(
            [sys.executable, "-m", "segbench", "run", "suite.yaml", "--devices", "cpu", *args],
            cwd=workspace,
            env=ENV,
            stdout=out,
            stderr=out,
            start_new_session=True,  # its own group: what the test leaves behind can be found and killed
        )
    if terminal is not None:
        os.close(terminal.slave)
    return proc


def _run(workspace: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "segbench", "run", "suite.yaml", "--devices", "cpu"],
        cwd=workspace,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"


class Terminal:
    """A pseudo-terminal for the driver's output, copied to ``out.log``, that can be hung up."""

    def __init__(self, log: Path) -> None:
        self.master, self.slave = pty.openpty()
        self._hang_up = threading.Event()
        self._copier = threading.Thread(target=self._copy, args=(log,), daemon=True)
        self._copier.start()

    def _copy(self, log: Path) -> None:
        with open(log, "wb") as out:
            while not self._hang_up.is_set():
                if select.select([self.master], [], [], 0.1)[0]:
                    try:
                        out.write(os.read(self.master, 65536))
                    except OSError:  # the driver's side is closed
                        break
        os.close(self.master)

    def hang_up(self) -> None:
        """Close the terminal, as a dropped ssh session does: every write to it fails from now on."""
        self._hang_up.set()
        self._copier.join(timeout=10)


@pytest.fixture()
def cleanup() -> Iterator[list[int]]:
    """Pids to kill whatever happens (the driver's group and every worker seen), so no test leaks."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)


def _wait_for(what: str, ok: Callable[[], bool], proc: subprocess.Popen[bytes], workspace: Path) -> None:
    deadline = time.monotonic() + 240
    while not ok():
        if proc.poll() is not None or time.monotonic() > deadline:
            log = (workspace / "out.log").read_text(errors="replace")
            raise AssertionError(f"never saw {what} (driver exit {proc.poll()})\n{log}")
        time.sleep(0.1)


def _count(trace: Path, mark: str) -> int:
    return trace.read_text().count(mark) if trace.exists() else 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has released everything; only its parent's wait() is left


def _assert_all_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "processes outlived their driver"


def _numbers(db: Path) -> dict[str, object]:
    """The last run's done job: every metric (value and samples) and curve, timings left out."""
    with sqlite3.connect(db) as conn:
        run = conn.execute("select max(id) from runs").fetchone()[0]
        job = conn.execute("select id from jobs where run_id = ? and status = 'done'", (run,)).fetchone()[0]
        rows = conn.execute("select name, value, samples from metrics where job_id = ?", (job,)).fetchall()
        curves = conn.execute('select name, steps, "values" from series where job_id = ?', (job,)).fetchall()
    numbers: dict[str, object] = {n: (v, s) for n, v, s in rows if n not in TIMINGS}
    numbers.update({f"series:{n}": (s, v) for n, s, v in curves})
    return numbers


def _resumed_from(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        extra = conn.execute(
            "select json_extract(extra, '$.resumed_from') from metrics where name = 'train_seconds' "
            "and job_id = (select max(id) from jobs)"
        ).fetchone()[0]
    return int(extra)


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("pragma integrity_check").fetchone()[0]


def _checkpoint_iteration(workspace: Path) -> int | None:
    found = list((workspace / "results" / "checkpoints").glob("*/*.pt"))
    return int(torch.load(found[0], weights_only=True)["iteration"]) if found else None


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The numbers of the training job run without interruption."""
    workspace = tmp_path_factory.mktemp("straight")
    _write_suite(workspace, TRAIN_SUITE)
    _run(workspace)
    return _numbers(workspace / "results" / "segbench.db")


@pytest.mark.slow
def test_kill_9_mid_training_leaves_no_worker_and_the_resume_is_exact(
    tmp_path: Path, straight: dict[str, object], cleanup: list[int]
) -> None:
    trace = _write_suite(tmp_path, TRAIN_SUITE, checkpoint_every=25)
    proc = _start(tmp_path)
    cleanup.append(proc.pid)
    _wait_for("40 training steps", lambda: _count(trace, "t") >= 40, proc, tmp_path)
    workers = _descendants(proc.pid)
    cleanup += workers
    loaders = [c for worker in children(proc.pid) for c in children(worker)]
    assert loaders, workers  # the segbench worker's DataLoader worker, which must go too
    proc.kill()
    proc.wait(timeout=30)
    _assert_all_gone(workers)
    db = tmp_path / "results" / "segbench.db"
    assert _integrity(db) == "ok"
    _run(tmp_path)  # the checkpoint of iteration 25 (at least) carries on
    assert _resumed_from(db) >= 25
    assert _numbers(db) == straight
    with sqlite3.connect(db) as conn:
        # the killed driver's run was reconciled by the resume, and no job key has two results
        runs = conn.execute("select status from runs order by id").fetchall()
        assert [r[0] for r in runs] == ["interrupted", "done"]
        done = conn.execute("select job_key, count(*) from jobs where status = 'done' group by job_key")
        assert all(n == 1 for _, n in done.fetchall())


@pytest.mark.slow
def test_sighup_saves_the_training_where_it_is_and_the_resume_continues_it(
    tmp_path: Path, straight: dict[str, object], cleanup: list[int]
) -> None:
    # No periodic checkpoint: whatever checkpoint exists afterwards, the interrupt wrote.
    trace = _write_suite(tmp_path, TRAIN_SUITE, checkpoint_every=0)
    terminal = Terminal(tmp_path / "out.log")
    proc = _start(tmp_path, terminal=terminal)
    cleanup.append(proc.pid)
    _wait_for("20 training steps", lambda: _count(trace, "t") >= 20, proc, tmp_path)
    cleanup += _descendants(proc.pid)
    steps_before = _count(trace, "t")
    terminal.hang_up()  # the progress view's next write would fail with EIO
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=120) == 130, (tmp_path / "out.log").read_text()
    saved, stepped = _checkpoint_iteration(tmp_path), _count(trace, "t")
    # saved at the step it had reached (one forward per step), not at some earlier point
    assert saved == stepped and steps_before <= saved < 80
    db = tmp_path / "results" / "segbench.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from runs").fetchone()[0] == "interrupted"
    _run(tmp_path)
    assert _resumed_from(db) == saved
    assert _count(trace, "t") - stepped == 80 - saved  # the resume ran only the steps left
    assert _numbers(db) == straight


@pytest.mark.slow
def test_kill_9_during_latency_measurement_leaves_no_worker(tmp_path: Path, cleanup: list[int]) -> None:
    trace = _write_suite(tmp_path, LATENCY_SUITE)
    proc = _start(tmp_path)
    cleanup.append(proc.pid)
    _wait_for("timed forwards", lambda: _count(trace, "e") >= 5, proc, tmp_path)
    workers = _descendants(proc.pid)
    cleanup += workers
    assert workers
    proc.kill()
    proc.wait(timeout=30)
    _assert_all_gone(workers)
    assert _integrity(tmp_path / "results" / "segbench.db") == "ok"


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
def test_kill_9_of_a_ray_driver_takes_its_local_ray_instance_and_tasks_with_it(
    tmp_path: Path, cleanup: list[int]
) -> None:
    trace = _write_suite(tmp_path, TRAIN_SUITE)
    proc = _start(tmp_path, "--backend", "ray")
    cleanup.append(proc.pid)
    _wait_for("10 training steps", lambda: _count(trace, "t") >= 10, proc, tmp_path)
    ray = {pid: _command(pid) for pid in _descendants(proc.pid)}
    cleanup += list(ray)
    assert any("ray::run_task" in c for c in ray.values()), ray  # the task, and its DataLoader worker
    assert any("raylet" in c for c in ray.values()), ray
    proc.kill()
    proc.wait(timeout=30)
    # Ray's dashboard and runtime-env agents hold no device and notice the raylet's end on
    # their own schedule (about a minute); everything that computes or serves must go at once.
    _assert_all_gone([pid for pid, c in ray.items() if "Agent" not in c])
    assert _integrity(tmp_path / "results" / "segbench.db") == "ok"
