"""The results database on a real PostgreSQL server, started for these tests.

The server runs from a temporary directory on loopback with a private socket
directory (``initdb`` + ``pg_ctl``, trust authentication, fsync off) and is
stopped when the module's tests end, whatever happened. PostgreSQL refuses to
run as root, so as root the server runs as an unprivileged account. Skipped only
when the server binaries are not installed.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from segbench.errors import UserError
from segbench.store.db import open_db
from segbench.store.schema import Base, Job, Metric, Run
from tests.test_spine import SUITE, segbench
from tests.test_store import alembic_head, result, start, write_suite

pytestmark = pytest.mark.postgres

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "segbench"


def _bin_dirs() -> Iterator[Path]:
    found = shutil.which("initdb")
    if found:
        yield Path(found).resolve().parent
    versioned = Path("/usr/lib/postgresql").glob("*/bin")  # Debian / Ubuntu
    yield from sorted(
        versioned, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True
    )
    yield from sorted(Path("/usr").glob("pgsql-*/bin"), reverse=True)  # RHEL / Fedora


def find_server_binaries() -> Path | None:
    for directory in _bin_dirs():
        if all((directory / name).is_file() for name in SERVER_BINARIES):
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PgServer:
    port: int
    databases: Iterator[int]

    def new_database(self) -> str:
        """A fresh, empty database on the server; its SQLAlchemy URL."""
        name = f"segbench_test_{next(self.databases)}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    bindir = find_server_binaries()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under "
            "/usr/lib/postgresql/*/bin"
        )
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:  # postgres will not run as root: use an unprivileged account
        account = next((a for a in ("postgres", "nobody") if _has_account(a)), None)
        if account is None:
            pytest.skip("running as root and no unprivileged account (postgres, nobody) to run PostgreSQL")
        entry = pwd.getpwnam(account)
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    # Short, world-traversable path: the socket path must stay under ~100 bytes, and the server's
    # account must reach it (pytest's tmp_path lives under a 0700 directory of the current user).
    base = Path(tempfile.mkdtemp(prefix="segbench-pg-"))
    data, sockets, log = base / "data", base / "sock", base / "server.log"
    sockets.mkdir()
    if run_as:
        for path in (base, sockets):
            os.chown(path, run_as["user"], run_as["group"])

    def pg(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(bindir / args[0]), *args[1:]],
            cwd=base,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
            capture_output=True,
            text=True,
            timeout=timeout,
            **run_as,
        )
        if check and proc.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            raise AssertionError(
                f"{' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{server_log}"
            )
        return proc

    started = False
    try:
        initdb = [
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ]
        pg("initdb", *initdb)
        for attempt in range(3):  # a port picked free can be taken before the server binds it
            port = _free_port()
            options = (
                f"-p {port} -k {shlex.quote(str(sockets))} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=30"
            )
            proc = pg(
                "pg_ctl",
                "start",
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                check=attempt == 2,
            )
            if proc.returncode == 0:
                started = True
                break
        yield PgServer(port=port, databases=count())
    finally:
        if started or (data / "postmaster.pid").exists():
            stopped = pg("pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w", "-t", "30", check=False)
            if stopped.returncode != 0 and (data / "postmaster.pid").exists():
                pid = int((data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
        shutil.rmtree(base, ignore_errors=True)


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture()
def pg_url(pg_server: PgServer) -> str:
    return pg_server.new_database()


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
        res.add("latency_ms", 3.5, "ms", "latency", samples=[3.0, 3.5, 4.0], extra={"cv": 0.1, "noisy": True})
        recorder.record(first.job_id, res)
        with pytest.raises(IntegrityError):
            recorder.record(first.job_id, result(first.spec, miou=0.75))
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
