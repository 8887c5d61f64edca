"""Is a run's driver still alive? Runs carry their driver's identity and a heartbeat.

A ``segbench run`` that is killed (``kill -9``, the OOM killer, a lost machine)
cannot mark its run finished. Its row says who drove it: the host and its boot
id, the pid and the process's start time (``/proc/PID/stat`` field 22, in
clock ticks since boot, so a pid the kernel handed to another process is not
mistaken for the driver), and a heartbeat the driver refreshes every
``SEGBENCH_HEARTBEAT_SECONDS`` (15 s). In the driver's own boot of its own
machine the process table decides at once; elsewhere only the heartbeat can,
once it is older than the lease, ``SEGBENCH_LEASE_SECONDS`` (300 s).

Commands that write reconcile such runs (:func:`reconcile`): the run and its
unfinished jobs become ``interrupted`` with the reason. Read-only commands only
*say* so (:func:`gone_reason`), without writing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from segbench.errors import UserError
from segbench.store.provenance import host
from segbench.store.schema import Claim, Job, Run

UNFINISHED = ("pending", "running")


def now() -> datetime:
    """UTC, naive: what the database columns hold."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def env_seconds(name: str, default: float) -> float:
    """A duration setting from the environment (``$name`` seconds), else ``default``."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise UserError(f"{name}='{value}': expected a positive number of seconds")
    return seconds


def lease_seconds() -> float:
    """How long a heartbeat (and a claim) stays valid without renewal."""
    return env_seconds("SEGBENCH_LEASE_SECONDS", 300.0)


def heartbeat_seconds() -> float:
    """How often a live driver renews its heartbeat and its claims' leases."""
    return env_seconds("SEGBENCH_HEARTBEAT_SECONDS", 15.0)


def process_start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), or None if it is gone or unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after its end
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def boot_id() -> str | None:
    """This machine's boot id (Linux), or None where there is none to read."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Driver:
    """The process driving a run."""

    host: str
    pid: int
    started: int | None
    boot: str | None

    @classmethod
    def this_process(cls) -> Driver:
        pid = os.getpid()
        return cls(host(), pid, process_start_ticks(pid), boot_id())


def _here(run: Run) -> bool:
    """Whether ``run``'s driver ran in this boot of this machine, so its pid can be looked up here.

    Two machines may share a host name (containers, cloned images): the boot
    id tells them apart. A different boot id on this host name may also be
    this machine after a reboot; then the heartbeat decides, as for any other host.
    """
    if run.driver_pid is None or run.host != host():
        return False
    return run.driver_boot is None or run.driver_boot == boot_id()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def gone_reason(run: Run, at: datetime | None = None) -> str | None:
    """Why ``run`` (recorded as running) has no live driver, or None while it may still be running."""
    if run.status != "running":
        return None
    at = at or now()
    if _here(run):
        assert run.driver_pid is not None
        if not _pid_alive(run.driver_pid):
            return f"driver pid {run.driver_pid} on host {run.host} is gone"
        started = process_start_ticks(run.driver_pid)
        if run.driver_started is not None and started is not None and started != run.driver_started:
            return f"driver pid {run.driver_pid} on host {run.host} is gone (the pid is another process now)"
        return None
    beat = run.heartbeat_at or run.started_at  # runs recorded before heartbeats: their start
    if at - beat > timedelta(seconds=lease_seconds()):
        return (
            f"driver pid {run.driver_pid or '?'} on host {run.host} is gone "
            f"(no heartbeat since {beat:%Y-%m-%d %H:%M:%S} UTC)"
        )
    return None


def reconcile(session: Session) -> list[str]:
    """Close runs whose driver is gone, in the caller's transaction; one line per run changed.

    Unfinished jobs become ``interrupted`` with the reason, and so does the run;
    a run that had nothing left unfinished (its driver died closing it) is
    closed as it ended: ``done``, or ``failed`` if a job failed. Its claims go.
    """
    changes = []
    at = now()
    for run in session.scalars(select(Run).where(Run.status == "running").order_by(Run.id)):
        why = gone_reason(run, at)
        if why is None:
            continue
        run.finished_at = run.heartbeat_at or at
        jobs = session.scalars(select(Job).where(Job.run_id == run.id, Job.status.in_(UNFINISHED))).all()
        for job in jobs:
            job.status = "interrupted"
            job.failure_kind = "interrupted"
            job.error = f"interrupted: {why}"
            job.finished_at = run.finished_at
        if jobs:
            run.status = "interrupted"
        else:
            failed = session.scalar(
                select(Job.id).where(Job.run_id == run.id, Job.status == "failed").limit(1)
            )
            run.status = "failed" if failed is not None else "done"
        session.execute(delete(Claim).where(Claim.run_id == run.id))
        changes.append(
            f"run {run.id} ({run.suite_name}): {run.status}, {len(jobs)} unfinished job(s) interrupted: {why}"
        )
    return changes


@contextmanager
def heartbeat(beat: Callable[[], None], interval: float) -> Iterator[None]:
    """Call ``beat`` every ``interval`` seconds from a thread (its own session) while the block runs.

    A beat the database is too busy for is skipped: the lease outlasts many beats.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                beat()
            except (OperationalError, InterfaceError):
                continue

    thread = threading.Thread(target=loop, name="segbench-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)
