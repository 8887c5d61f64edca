"""A reader/writer lock between the processes of one machine, on lock files.

Workers of the local pool, Ray workers, and the workers of another segbench
run on the same machine all meet on the same files. ``fcntl.flock`` locks
belong to an open file description, so any two opens conflict (threads of one
process included), and the kernel drops a lock when its holder dies: a worker
killed mid-training never leaves the device locked for the ones after it.

Latency is the writer: training and evaluation (readers) run side by side,
a latency measurement runs alone. A plain shared/exclusive ``flock`` would
let a steady stream of readers starve it, so a second file is a turnstile:
a reader passes through it before taking its shared lock; a writer holds it
while it waits for the readers to drain and while it measures, so no new
reader starts meanwhile.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def default_lock_dir() -> Path:
    """One directory per user on this machine's temp filesystem (never a shared mount)."""
    return Path(tempfile.gettempdir()) / f"segbench-{os.getuid()}"


@contextmanager
def _flocked(path: Path, mode: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing the description releases the lock


class SharedHold:
    """A shared hold that can step aside: long training pauses for a waiting latency measurement.

    Without it a measurement waits for every other training on the machine to
    end, which can be hours; with :meth:`pause` called every few iterations, it
    waits a few iterations and the trainings pause for as long as it measures.
    """

    def __init__(self, lock: NodeDeviceLock, fd: int) -> None:
        self._lock = lock
        self._fd = fd

    def pause(self) -> None:
        """If a measurement waits (it holds the turnstile), let it run, then take the hold back."""
        gate = os.open(self._lock.gate, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return  # nobody waits: keep going
            except BlockingIOError:
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_EX)  # through the turnstile once the measurement is done
            fcntl.flock(self._fd, fcntl.LOCK_SH)
        finally:
            os.close(gate)


class NodeDeviceLock:
    """Shared for training and evaluation, exclusive for latency, across processes of one machine.

    ``name`` picks the device the lock guards (``cpu``; a GPU's workers own
    their GPU and need none). Picklable: only paths travel to the workers.
    """

    def __init__(self, name: str = "cpu", directory: Path | None = None) -> None:
        directory = directory or default_lock_dir()
        self.gate = directory / f"{name}.gate"
        self.lock = directory / f"{name}.lock"

    def _ready(self) -> None:
        self.gate.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    @contextmanager
    def shared(self) -> Iterator[SharedHold]:
        self._ready()
        with _flocked(self.gate, fcntl.LOCK_EX):
            fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
            except BaseException:
                os.close(fd)
                raise
        try:
            yield SharedHold(self, fd)
        finally:
            os.close(fd)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        self._ready()
        with _flocked(self.gate, fcntl.LOCK_EX), _flocked(self.lock, fcntl.LOCK_EX):
            yield
