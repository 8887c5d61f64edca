"""Both backends through the real CLI: the local worker pool and a real local Ray cluster.

The same suite runs on each into its own SQLite file: the accuracy numbers must
agree (training is deterministic on CPU), evaluation-only variants must share
one training, and a worker that dies mid-job must cost that job (and the jobs
waiting for its checkpoint), never the rest of the suite.
"""

from __future__ import annotations

import sqlite3
import textwrap
import threading
from pathlib import Path

import pytest

from segbench.runner.node_lock import NodeDeviceLock
from tests.test_spine import segbench

SUITE = textwrap.dedent(
    """
    name: backends
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 32, val_length: 4}
    models:
      - name: "tests.tinymodels:tiny_segnet"
        label: tiny
    variants:
      - block: grid
        grid:
          width: [4, 8]
          eval.flip: [false, true]
    stages: [complexity, latency, train, eval]
    train: {iterations: 3, batch_size: 2, aux_weight: null}
    eval: {batch_size: 2}
    measure: {input_size: [64, 64], warmup: 1, iters: 5, min_iters: 3, memory: false}
    """
)
CRASH_BLOCK = textwrap.dedent(
    """\
      - block: crash
        grid:
          fail: [crash]
          width: [6]
          eval.flip: [false, true]
    """
)


def jobs(db: Path) -> dict[str, tuple[str, str | None, str | None]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select label, status, device, error from jobs order by id").fetchall()
    return {label: (status, device, error) for label, status, device, error in rows}


def miou(db: Path) -> dict[str, float]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select j.label, m.value from metrics m join jobs j on j.id = m.job_id where m.name = 'mIoU'"
        ).fetchall()
    return dict(rows)


BACKENDS = {"local": ["--backend", "local"], "ray": ["--backend", "ray", "--workers", "2"]}


@pytest.mark.slow
def test_ray_and_local_backends_record_the_same_accuracy(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(SUITE)
    dbs = {}
    for name, args in BACKENDS.items():
        dbs[name] = tmp_path / f"{name}.db"
        workdir = tmp_path / name
        done = segbench(  # a relative --workdir: Ray workers need not share the driver's directory
            "run", "suite.yaml", "--db", f"sqlite:///{dbs[name]}", "--devices", "cpu", "--workdir",
            name, *args, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "4 ran, 0 reused, 0 failed" in done.stdout
        # the flip is an evaluation factor: two trainings, each reused by its flipped twin
        assert len(list(workdir.glob("checkpoints/*/*"))) == 2
    local, ray = miou(dbs["local"]), miou(dbs["ray"])
    assert len(local) == 4 and local == ray
    assert {device for _, device, _ in jobs(dbs["local"]).values()} == {"cpu"}
    assert all(device and device.startswith("cpu@") for _, device, _ in jobs(dbs["ray"]).values())

    again = segbench(
        "run", "suite.yaml", "--db", f"sqlite:///{dbs['ray']}", "--devices", "cpu", "--workdir",
        str(tmp_path / "ray"), *BACKENDS["ray"], cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0 and "0 ran, 4 reused" in again.stdout, again.stdout + again.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_worker_that_dies_costs_its_training_group_not_the_suite(tmp_path: Path, backend: str) -> None:
    # the crashing block comes first, so with one local worker everything else runs after the death
    text = SUITE.replace("variants:\n", "variants:\n" + textwrap.indent(CRASH_BLOCK, "  "))
    (tmp_path / "suite.yaml").write_text(text)
    db = tmp_path / "r.db"
    args = ["--backend", "local", "--workers", "1"] if backend == "local" else BACKENDS["ray"]
    ran = segbench("run", "suite.yaml", "--db", f"sqlite:///{db}", "--devices", "cpu", *args, cwd=tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "6 ran, 0 reused, 2 failed" in ran.stdout, ran.stdout + ran.stderr
    recorded = jobs(db)
    crashed = [v for k, v in recorded.items() if "fail=crash" in k]
    assert [status for status, _, _ in crashed] == ["failed", "failed"]
    died = "worker process died (exit code 3)" if backend == "local" else "Ray task failed"
    first, second = (error or "" for _, _, error in crashed)
    assert died in first
    assert "not run: it shares its training with" in second and died in second
    assert [status for k, (status, _, _) in recorded.items() if "fail=crash" not in k] == ["done"] * 4


def test_bad_placement_options_are_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(SUITE)
    for args, message in (
        (["--backend", "ray", "--devices", "0,1"], "with --backend ray, Ray places the jobs"),
        (["--ray-address", "auto"], "--ray-address auto goes with --backend ray"),
        # no cluster runs here: the address is tried before anything is recorded
        (["--backend", "ray", "--ray-address", "auto"], "--ray-address auto: Could not find any running Ray"),
        # -1 used to run nothing and record the run done, 0 to mean 1
        (["--workers", "-1"], "--workers -1: expected a number of workers of at least 1"),
        (["--workers", "0", "--backend", "ray"], "--workers 0: expected a number of workers of at least 1"),
    ):
        refused = segbench("run", "suite.yaml", *args, cwd=tmp_path)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert not (tmp_path / "results" / "segbench.db").exists()


def test_node_lock_latency_waits_for_training_and_holds_new_training_back(tmp_path: Path) -> None:
    """Reader/writer with writer preference, between separate opens of the lock files."""
    order: list[str] = []
    training_holds, writer_waiting, release_training = threading.Event(), threading.Event(), threading.Event()

    def training(name: str, started: threading.Event | None = None) -> None:
        with NodeDeviceLock("cpu", tmp_path).shared():
            order.append(f"{name} in")
            if started is not None:
                started.set()
                assert release_training.wait(10)
            order.append(f"{name} out")

    def latency() -> None:
        writer_waiting.set()
        with NodeDeviceLock("cpu", tmp_path).exclusive():
            order.append("latency in")
            order.append("latency out")

    first = threading.Thread(target=training, args=("train-1", training_holds))
    first.start()
    assert training_holds.wait(10)
    writer = threading.Thread(target=latency)
    writer.start()
    assert writer_waiting.wait(10)
    # the writer now holds the turnstile and waits for train-1: a new reader must queue behind it
    late = threading.Thread(target=training, args=("train-2",))
    for _ in range(1000):
        if not _gate_is_free(tmp_path):
            break
        threading.Event().wait(0.01)
    else:
        raise AssertionError("the waiting latency measurement never took the turnstile")
    late.start()
    threading.Event().wait(0.2)
    assert order == ["train-1 in"]
    release_training.set()
    for t in (first, writer, late):
        t.join(10)
    assert order == ["train-1 in", "train-1 out", "latency in", "latency out", "train-2 in", "train-2 out"]


def _gate_is_free(directory: Path) -> bool:
    import fcntl
    import os

    fd = os.open(directory / "cpu.gate", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_long_training_pauses_for_a_waiting_latency_measurement(tmp_path: Path) -> None:
    """Training calls pause() every few iterations; a measurement need not wait for it to end."""
    stop, measured, steps_during = threading.Event(), threading.Event(), []
    steps = 0

    def training() -> None:
        nonlocal steps
        with NodeDeviceLock("cpu", tmp_path).shared() as hold:
            while not stop.is_set():
                steps += 1
                hold.pause()
                threading.Event().wait(0.005)

    def latency() -> None:
        with NodeDeviceLock("cpu", tmp_path).exclusive():
            before = steps
            threading.Event().wait(0.2)
            steps_during.append(steps - before)
        measured.set()

    trainer = threading.Thread(target=training)
    trainer.start()
    while steps < 3:
        threading.Event().wait(0.01)
    writer = threading.Thread(target=latency)
    writer.start()
    try:
        assert measured.wait(10), "the measurement waited for the training to end"
        # while it measured, the training stood still (at most the step it was in finished)
        assert steps_during[0] <= 1
        at_measurement = steps
        for _ in range(1000):  # and it goes on afterwards
            if steps >= at_measurement + 3:
                break
            threading.Event().wait(0.01)
        else:
            raise AssertionError("the training did not resume after the measurement")
    finally:
        stop.set()
        trainer.join(10)
        writer.join(10)


def test_ray_placement_one_job_per_gpu_with_its_share_of_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Placement on a cluster that declares 2 GPUs and 2 CPUs (nothing runs on them here)."""
    import ray

    from segbench.errors import UserError
    from segbench.runner.ray_backend import RayBackend, RaySlot

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert RayBackend(None, "auto", None).placement() == RaySlot(gpu=True, threads=1)
        assert RayBackend(None, "cpu", None).placement() == RaySlot(gpu=False, threads=2)
        assert RayBackend(None, "cpu", 2).placement() == RaySlot(gpu=False, threads=1)
        with pytest.raises(UserError, match="with GPUs segbench runs one job per GPU"):
            RayBackend(None, "auto", 2).placement()
        with pytest.raises(UserError, match="the smallest Ray node has 2 CPU"):
            RayBackend(None, "cpu", 3).placement()
    finally:
        ray.shutdown()
