"""``segbench gc``: the stated policy on a real database and real checkpoint files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from segbench.store.db import open_db
from tests.test_regress_support import FakeJob, record_run
from tests.test_spine import segbench

A, B = "a" * 40, "b" * 40  # record_run files a run under code_id = commit[:16]


def _ckpt(workdir: Path, code: str, name: str, age_s: float) -> Path:
    path = workdir / "checkpoints" / code[:16] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"w" * 1000)
    stamp = 1_700_000_000 - age_s
    os.utime(path, (stamp, stamp))
    return path


def _gc(tmp_path: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = segbench("gc", "--db", db, "--workdir", str(tmp_path / "results"), *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_gc_removes_only_checkpoints_no_unfinished_job_needs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    db = open_db(url)
    try:
        # commit A: k1 finished, k2 interrupted; commit B (newer): k1 finished again, k3 failed
        record_run(db, A, [FakeJob("k1"), FakeJob("k2", status="interrupted")])
        record_run(db, B, [FakeJob("k1"), FakeJob("k3", status="failed")])
    finally:
        db.close()
    work = tmp_path / "results"
    old_k1 = _ckpt(work, A, "k1.pt", age_s=100)
    old_k1_tmp = _ckpt(work, A, ".k1.pt.4242.tmp", age_s=100)  # an interrupted write of a finished training
    resumable = _ckpt(work, A, "k2.pt", age_s=100)
    new_k1 = _ckpt(work, B, "k1.pt", age_s=10)
    failed = _ckpt(work, B, "k3.pt", age_s=10)
    failed_tmp = _ckpt(work, B, ".k3.pt.99.tmp", age_s=10)
    foreign = _ckpt(work, "c" * 40, "k9.pt", age_s=1000)  # another database's
    everything = [old_k1, old_k1_tmp, resumable, new_k1, failed, failed_tmp, foreign]

    listed = _gc(tmp_path, url)
    assert all(p.exists() for p in everything)  # a dry run by default
    assert str(old_k1) in listed.stdout and str(old_k1_tmp) in listed.stdout
    assert str(new_k1) not in listed.stdout and "--yes" in listed.stdout
    assert "kept 3 needed by unfinished jobs, 1 newest finished (--keep 1), 1 unknown" in listed.stdout

    _gc(tmp_path, url, "--yes")
    assert [p for p in everything if not p.exists()] == [old_k1, old_k1_tmp]

    # --keep 0: the newest finished goes too, and a code folder left empty is removed
    _gc(tmp_path, url, "--keep", "0", "--yes")
    assert not new_k1.exists() and not new_k1.parent.joinpath("k1.pt").exists()
    assert resumable.exists() and failed.exists() and failed_tmp.exists() and foreign.exists()
    db = open_db(url)
    try:
        record_run(db, "d" * 40, [FakeJob("k5")])
    finally:
        db.close()
    lone = _ckpt(work, "d" * 40, "k5.pt", age_s=1)
    _gc(tmp_path, url, "--keep", "0", "--yes")
    assert not lone.parent.exists()


def test_gc_without_checkpoints_says_so_and_refuses_a_negative_keep(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    open_db(url).close()
    assert "nothing to remove" in _gc(tmp_path, url).stdout
    bad = segbench("gc", "--db", url, "--keep", "-1", cwd=tmp_path)
    assert bad.returncode == 2 and "--keep -1" in bad.stderr and "Traceback" not in bad.stderr
