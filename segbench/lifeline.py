"""A worker process never outlives the process that started it.

A driver killed with ``kill -9`` (or by the OOM killer) gets no chance to stop its
workers; left alone they would go on training, write checkpoints nobody
records, and hold their GPU until someone finds them. (This module sits below both
the runner, whose workers call it, and the engine, whose DataLoader workers call it
again, so that the engine never imports the runner.) Two guards, both set up
by :func:`die_with_parent` as the first thing a worker does:

* **Linux:** ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. The kernel kills the worker
  the moment its parent goes, wherever the worker is (a CUDA kernel, a blocked
  queue read). Pitfalls, and how they are met: the signal fires when the parent
  *thread* that created the child exits, not the parent process, so workers
  must be started by a thread that lives as long as they do (the backends'
  ``run`` starts and joins them in one call); the setting is cleared by
  ``fork``, so a worker's own children (DataLoader workers) set it again for
  themselves (:mod:`segbench.engine.batches` calls this from its
  ``worker_init_fn``); and a parent that died *before* ``prctl`` ran is caught
  by comparing ``os.getppid()`` with the parent pid recorded at start.
* **Everywhere:** a daemon thread polls ``os.getppid()`` against that recorded
  pid every :data:`POLL_SECONDS` and ends the process when they differ (the
  orphan was re-parented). It runs beside whatever the main thread is doing —
  a long training loop, a latency measurement, a blocked ``Queue.get`` — since
  torch releases the GIL in its kernels.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

#: how often the portable guard looks at the parent
POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process die when its parent does (call it first thing in a child process).

    ``parent_pid`` is the parent's pid as the parent saw it when it started this
    process; without it the current parent is taken, which is only safe when
    this runs right after the fork (a DataLoader worker's init).
    """
    expected = os.getppid() if parent_pid is None else parent_pid
    _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != expected:  # the parent was gone before the kernel could be told
        _orphaned()
    threading.Thread(target=_watch, args=(expected,), name="segbench-lifeline", daemon=True).start()


def _set_pdeathsig(sig: signal.Signals) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no prctl (a libc without it): the polling thread remains
        return False


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_SECONDS)
    _orphaned()


def _orphaned() -> None:
    """End now, and the children with us: there is nobody left to report to."""
    for pid in children(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os._exit(1)


def children(pid: int) -> list[int]:
    """``pid``'s child processes (Linux ``/proc``; empty where there is none to read)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found += [int(c) for c in fh.read().split()]
        except OSError:
            continue
    return found
