"""Bad databases, disks and output places, through the real command line.

Every case must end with exit code 2, one ``error:`` line saying what is wrong
and where, no traceback, and the database exactly as it was (byte for byte; a
missing one still missing). Read-only and full disks are real: small tmpfs
mounts (this needs root, as CI and the development sandbox have; elsewhere those
cases skip, saying so).
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.report_fixtures import build_report_db

#: a suite that trains (so it needs a workdir) but fails fast when the database refuses it
TRAINING_SUITE = """\
name: bad_resources
datasets:
  - name: diagnostic
    options: {size: 64, train_length: 4, val_length: 4}
models:
  - name: "tests.tinymodels:tiny_segnet"
    label: tiny
stages: [complexity, train]
train: {iterations: 2, batch_size: 2, aux_weight: null}
"""


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def segbench(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Outcome]:
    """The real entry point (``segbench.cli.main``) in this process: a new interpreter per case
    would cost seconds each. An exception other than the exit is a traceback, and fails the test."""
    from segbench.cli import main

    def invoke(*args: str, cwd: Path) -> Outcome:
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("SEGBENCH_DB", "")
        monkeypatch.setattr(sys, "argv", ["segbench", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return Outcome(code, out.out, out.err)

    return invoke


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a real segbench database with one recorded run (WAL mode, closed: the file is all)."""
    path = tmp_path_factory.mktemp("recorded") / "good.db"
    build_report_db(path).close()
    assert not Path(f"{path}-wal").exists()
    return path.read_bytes()


@contextmanager
def tmpfs(path: Path, size: str = "1M") -> Iterator[Path]:
    """A real, small filesystem at ``path`` (unmounted after)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(path: Path) -> None:
    """Write until the filesystem holding ``path`` has no byte left."""
    with open(path / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


def good_db(path: Path, recorded: bytes) -> Path:
    """A copy of the ``recorded`` database at ``path``."""
    path.write_bytes(recorded)
    return path


def _random(tmp: Path, stack: ExitStack, recorded: bytes) -> Path:
    db = tmp / "random.db"
    db.write_bytes(random.Random(0).randbytes(20_000))
    return db


def _truncated(tmp: Path, stack: ExitStack, recorded: bytes) -> Path:
    db = good_db(tmp / "truncated.db", recorded)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    return db


def _empty(tmp: Path, stack: ExitStack, recorded: bytes) -> Path:
    db = tmp / "empty.db"
    db.write_bytes(b"")
    return db


def _missing(tmp: Path, stack: ExitStack, recorded: bytes) -> Path:
    return tmp / "not here" / "missing.db"


def _foreign(tmp: Path, stack: ExitStack, recorded: bytes) -> Path:
    db = tmp / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table customers (id integer primary key, name text)")
        conn.execute("create table orders (id integer primary key, customer integer)")
        conn.execute("insert into customers (name) values ('Ada')")
    return db


def _read_only(tmp: Path, stack: ExitStack, recorded: bytes) -> Path:
    source = good_db(tmp / "good.db", recorded)
    mount = stack.enter_context(tmpfs(tmp / "ro"))
    (mount / "good.db").write_bytes(source.read_bytes())
    read_only(mount)
    return mount / "good.db"


def _full(tmp: Path, stack: ExitStack, recorded: bytes) -> Path:
    source = good_db(tmp / "good.db", recorded)
    mount = stack.enter_context(tmpfs(tmp / "full", "1M"))
    (mount / "good.db").write_bytes(source.read_bytes())
    fill(mount)
    return mount / "good.db"


DATABASES: dict[str, Callable[[Path, ExitStack, bytes], Path]] = {
    "random-bytes": _random,
    "truncated": _truncated,
    "empty": _empty,
    "missing": _missing,
    "foreign": _foreign,
    "read-only": _read_only,
    "full-disk": _full,
}

RUN = ["run", "{suite}", "--devices", "cpu", "--workdir", "{tmp}/work"]
COMMANDS = {
    "run": RUN,
    "report": ["report"],
    "list": ["list", "runs"],
    "list-jobs": ["list", "jobs"],
    "show": ["show", "1"],
    "compare": ["compare", "1", "2"],
    "gc": ["gc", "--workdir", "{tmp}/work"],
}

#: (database, command, what the message must say)
CASES = [
    *[("random-bytes", c, "not an SQLite database") for c in ("run", "report", "list", "show")],
    *[("truncated", c, "corrupted") for c in ("run", "report", "list", "show")],
    *[("empty", c, "is empty") for c in ("report", "list", "list-jobs", "show", "compare", "gc")],
    *[("missing", c, "no results database") for c in ("report", "list", "show", "compare", "gc")],
    *[("foreign", c, "customers, orders") for c in ("run", "report", "list", "show")],
    ("read-only", "run", "read-only"),
    *[("full-disk", c, "no space left") for c in ("run", "report", "list", "show")],
]


def state(db: Path) -> bytes | None:
    return db.read_bytes() if db.exists() else None


def _expand(args: list[str], tmp: Path, suite: Path) -> list[str]:
    return [a.format(tmp=tmp, suite=suite) for a in args]


def _check_refused(proc: Outcome, says: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    assert proc.stderr.startswith("error: "), out
    assert says in proc.stderr, out


@pytest.mark.parametrize(("database", "command", "says"), CASES, ids=[f"{d}-{c}" for d, c, _ in CASES])
def test_bad_database_is_refused_and_left_as_it_was(
    segbench: Callable[..., Outcome], recorded: bytes, tmp_path: Path, database: str, command: str, says: str
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(TRAINING_SUITE)
    with ExitStack() as stack:
        db = DATABASES[database](tmp_path, stack, recorded)
        before, companions = state(db), {p.name for p in db.parent.glob(f"{db.name}?*")}
        proc = segbench(*_expand(COMMANDS[command], tmp_path, suite), "--db", f"sqlite:///{db}", cwd=tmp_path)
        _check_refused(proc, says)
        assert state(db) == before
        # On a full disk SQLite may leave an empty -wal (and a stub -shm, the index it rebuilds
        # from the -wal): no transaction is in them
        new = (
            [p for p in db.parent.glob(f"{db.name}?*") if p.name not in companions]
            if db.parent.exists()
            else []
        )
        assert all(p.name.endswith(("-wal", "-shm")) for p in new), new
        assert all(p.stat().st_size == 0 for p in new if p.name.endswith("-wal")), new
        if database == "missing":
            assert not db.parent.exists()  # not even its folder was created
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").rglob("*.pt"))


def test_read_only_database_is_read_by_read_only_commands(
    segbench: Callable[..., Outcome], recorded: bytes, tmp_path: Path
) -> None:
    """A results file on a read-only disk (a shared archive) can still be reported on."""
    with ExitStack() as stack:
        db = _read_only(tmp_path, stack, recorded)
        before = state(db)
        for args in (["report"], ["list", "runs"], ["show", "1"]):
            proc = segbench(*args, "--db", f"sqlite:///{db}", cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
        assert "tta_ablation" in proc.stdout or "tiny" in proc.stdout
        assert state(db) == before


@pytest.mark.parametrize("job_id", ["99999999999999999999", "-5", "0", "123456"])
def test_show_of_a_job_id_that_names_no_job(
    segbench: Callable[..., Outcome], recorded: bytes, tmp_path: Path, job_id: str
) -> None:
    db = good_db(tmp_path / "good.db", recorded)
    before = state(db)
    proc = segbench("show", "--db", f"sqlite:///{db}", "--", job_id, cwd=tmp_path)
    _check_refused(proc, f"no job {job_id} ")
    assert state(db) == before


def _out_read_only(tmp: Path, stack: ExitStack) -> list[str]:
    mount = stack.enter_context(tmpfs(tmp / "ro"))
    read_only(mount)
    return ["--out", str(mount / "reports" / "table.md")]


def _out_under_a_file(tmp: Path, stack: ExitStack) -> list[str]:
    (tmp / "a-file").write_text("not a folder")
    return ["--out", str(tmp / "a-file" / "table.md")]


def _out_is_a_folder(tmp: Path, stack: ExitStack) -> list[str]:
    (tmp / "folder").mkdir()
    return ["--out", str(tmp / "folder")]


def _out_full_disk(tmp: Path, stack: ExitStack) -> list[str]:
    mount = stack.enter_context(tmpfs(tmp / "full", "64k"))
    fill(mount)
    return ["--out", str(mount / "table.md")]


def _plots_read_only(tmp: Path, stack: ExitStack) -> list[str]:
    mount = stack.enter_context(tmpfs(tmp / "ro"))
    read_only(mount)
    return ["--plots", str(mount / "plots")]


def _workdir_read_only(tmp: Path, stack: ExitStack) -> list[str]:
    mount = stack.enter_context(tmpfs(tmp / "ro"))
    read_only(mount)
    return ["--workdir", str(mount / "work")]


def _workdir_is_a_file(tmp: Path, stack: ExitStack) -> list[str]:
    (tmp / "work-file").write_text("not a folder")
    return ["--workdir", str(tmp / "work-file")]


OUTPUTS = {
    "report-out-read-only": (["report"], _out_read_only, "Read-only file system"),
    "report-out-under-a-file": (["report"], _out_under_a_file, "a-file"),
    "report-out-is-a-folder": (["report"], _out_is_a_folder, "is a directory"),
    "report-out-full-disk": (["report"], _out_full_disk, "No space left on device"),
    "report-plots-read-only": (["report"], _plots_read_only, "Read-only file system"),
    "run-workdir-read-only": (
        ["run", "{suite}", "--devices", "cpu"],
        _workdir_read_only,
        "Read-only file system",
    ),
    "run-workdir-is-a-file": (["run", "{suite}", "--devices", "cpu"], _workdir_is_a_file, "--workdir"),
}


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_unwritable_output_place_is_refused_and_nothing_is_recorded(
    segbench: Callable[..., Outcome], recorded: bytes, tmp_path: Path, case: str
) -> None:
    command, place, says = OUTPUTS[case]
    suite = tmp_path / "suite.yaml"
    suite.write_text(TRAINING_SUITE)
    db = good_db(tmp_path / "good.db", recorded)
    before = state(db)
    with ExitStack() as stack:
        extra = place(tmp_path, stack)
        proc = segbench(*_expand(command, tmp_path, suite), *extra, "--db", f"sqlite:///{db}", cwd=tmp_path)
        _check_refused(proc, says)
        if "--out" in extra:
            target = Path(extra[extra.index("--out") + 1])
            assert not target.is_file()  # no half-written report
            assert not [p for p in target.parent.glob(".*.tmp")] if target.parent.is_dir() else True
    assert state(db) == before  # the run was refused before it was recorded


def test_a_suite_that_never_trains_needs_no_workdir(segbench: Callable[..., Outcome], tmp_path: Path) -> None:
    """Only training writes checkpoints: measuring on a machine whose workdir is read-only just works."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(TRAINING_SUITE.replace("stages: [complexity, train]", "stages: [complexity]"))
    db = tmp_path / "new.db"
    with ExitStack() as stack:
        mount = stack.enter_context(tmpfs(tmp_path / "ro"))
        read_only(mount)
        proc = segbench(
            "run",
            str(suite),
            "--devices",
            "cpu",
            "--workdir",
            str(mount / "work"),
            "--db",
            f"sqlite:///{db}",
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from jobs").fetchall() == [("done",)]


def test_a_checkpoint_that_does_not_fit_says_so_and_the_previous_one_survives(tmp_path: Path) -> None:
    import errno

    import torch

    from segbench.engine.checkpoint import REQUIRED_KEYS, load_checkpoint, save_checkpoint

    def state(iteration: int, floats: int) -> dict[str, object]:
        base: dict[str, object] = {key: {} for key in REQUIRED_KEYS}
        return {**base, "format_version": 1, "iteration": iteration, "model": {"w": torch.ones(floats)}}

    with tmpfs(tmp_path / "small", "1M") as disk:
        path = disk / "c0de" / "k.pt"
        save_checkpoint(path, state(1, 1000))
        with pytest.raises(OSError) as raised:
            save_checkpoint(path, state(2, 600_000))  # ~2.3 MB
        assert raised.value.errno == errno.ENOSPC
        message = str(raised.value)
        assert f"no space left on device writing checkpoint {path} (needs ~2.3 MB" in message, message
        assert "inline_container" not in message
        assert sorted(p.name for p in path.parent.iterdir()) == ["k.pt"]  # no temp file left behind
        resumed = load_checkpoint(path)
        assert resumed is not None and resumed["iteration"] == 1  # the last complete one, whole


def test_read_only_commands_never_migrate_an_older_schema(
    segbench: Callable[..., Outcome], recorded: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database one migration behind this segbench (simulated: this segbench's head moved on) is
    refused by readers, untouched, with the way forward; `db upgrade` on a current one is a no-op."""
    from segbench.store import db as store_db

    db = good_db(tmp_path / "good.db", recorded)
    current = store_db.HEAD_REVISION
    assert (
        segbench("db", "upgrade", "--db", f"sqlite:///{db}", cwd=tmp_path)
        .stdout.strip()
        .endswith(f"is already at schema revision {current}")
    )
    before = state(db)
    monkeypatch.setattr(store_db, "HEAD_REVISION", current + "_next")
    for args in (["report"], ["list", "runs"], ["show", "1"]):
        proc = segbench(*args, "--db", f"sqlite:///{db}", cwd=tmp_path)
        _check_refused(proc, f"schema revision '{current}', not this segbench's '{current}_next'")
        assert "segbench db upgrade" in proc.stderr
    assert state(db) == before
    missing = segbench("db", "upgrade", "--db", f"sqlite:///{tmp_path / 'nope.db'}", cwd=tmp_path)
    _check_refused(missing, "no results database at")
    assert not (tmp_path / "nope.db").exists()
