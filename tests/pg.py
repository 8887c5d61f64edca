"""A real PostgreSQL server for tests, started in a temporary directory (fixtures in conftest.py).

The server runs from a temporary directory on loopback with a private socket
directory (``initdb`` + ``pg_ctl``, trust authentication, fsync off) and is
stopped when the tests that use it end, whatever happened. PostgreSQL refuses to
run as root, so as root the server runs as an unprivileged account. Tests are
skipped only when the server binaries are not installed.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import psycopg
import pytest

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
    #: ``pg_ctl`` run as the server's account: ``control("stop", "-m", "fast")``, then ``("start")``
    #: again on the same port (a server restart, as a team database goes through)
    control: Callable[..., None] = lambda *args: None

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut), as a restart or a network loss does."""
        self.control("stop", "-m", "fast")

    def start(self) -> None:
        """Start it again, on the same port and data."""
        self.control("start")

    def new_database(self) -> str:
        """A fresh, empty database on the server; its SQLAlchemy URL."""
        name = f"segbench_test_{next(self.databases)}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{name}"


@contextmanager
def running_server() -> Iterator[PgServer]:
    """A fresh server for the duration of the block (the ``pg_server`` fixture)."""
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

        def control(action: str, *args: str) -> None:
            extra = ["-l", str(log), "-o", options] if action == "start" else []
            pg("pg_ctl", action, "-D", str(data), "-w", "-t", "60", *extra, *args)

        yield PgServer(port=port, databases=count(), control=control)
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
