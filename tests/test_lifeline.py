"""A process that called ``die_with_parent`` does not outlive its parent, even blocked on a queue."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

PARENT = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys, time

    def child(parent_pid, queue, use_prctl):
        import segbench.lifeline as lifeline
        if not use_prctl:  # what a system without prctl has left: the polling thread
            lifeline._set_pdeathsig = lambda sig: False
        lifeline.die_with_parent(parent_pid)
        print("ready", flush=True)
        queue.get()  # blocked for good: only the lifeline can end it

    if __name__ == "__main__":
        queue = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(
            target=child, args=(os.getpid(), queue, sys.argv[1] == "prctl")
        )
        proc.start()
        print(proc.pid, flush=True)
        time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("guard", ["prctl", "polling"])
def test_child_blocked_on_a_queue_dies_when_its_parent_is_killed(tmp_path: Path, guard: str) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), guard],
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        for pid in (parent.pid, child):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_a_parent_gone_before_the_guard_was_set_is_noticed_at_once() -> None:
    # The recorded parent is not this process's parent (as when the real one died between
    # the spawn and the prctl call, and the child was re-parented): it must exit.
    code = "from segbench.lifeline import die_with_parent; import time\n"
    code += f"die_with_parent({os.getppid()}); time.sleep(60)"  # its grandparent, not its parent
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, timeout=60)
    assert proc.returncode == 1
