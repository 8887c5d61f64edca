"""Timing rounds: re-time a recorded run's jobs in a fresh process, one round per call.

Why a fresh process: the samples of one measurement vary by 1–4 %, but two
processes running identical code on a shared machine differ by up to ±20 %
(allocator state, memory layout, thread placement, what else the machine runs).
A decision on one process's samples calls that difference a regression. So a
timing is measured in *rounds*: round 0 is the job's own measurement in its
run; every later round is ``python -m segbench.regress.retime`` started anew,
which rebuilds the model from the recorded job's config (same seed, same
settings, same thread count) and records one timing round
(:func:`segbench.store.recorder.add_timing_round`).
``run --at A,B`` alternates the rounds between revisions (A B A B …, as asv's
``--interleave-rounds``), each in its revision's worktree, so slow drift of the
machine lands on both sides alike; a plain ``segbench run`` with
``measure.rounds`` (or ``--rounds``) runs its rounds after the run.

A job gets a round only while it has fewer than its wanted count (the job's
``measure.rounds``, else the driver's default), on the machine it was measured
on (same hardware key); rounds are numbered after the ones it has, so a
re-timed cached job accumulates rounds rather than overwriting any.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from segbench.errors import UserError

#: ``run --at`` times this many rounds per job unless the suite says otherwise (``measure.rounds``):
#: 8, because load on a shared machine lasts whole rounds and 5 + 5 rounds let three such rounds
#: hide a 2× slowdown (measured; see :mod:`segbench.regress.rounds`)
AT_ROUNDS = 8
#: set in a ``run --at`` child: the driver interleaves the rounds, the child runs none of its own
ROUNDS_BY_DRIVER = "SEGBENCH_ROUNDS_BY_DRIVER"
#: set by a driver that holds this machine's exclusive CPU lock for a sweep of rounds: the
#: round processes it starts measure under its hold instead of queueing for their own
LOCK_HELD = "SEGBENCH_ROUND_LOCK_HELD"
#: the timing that is re-measured; throughput is derived from it (batch / median)
ROUND_METRIC = "latency_ms"


def wanted_rounds(config: dict[str, object], default: int) -> int:
    """How many rounds a recorded job asks for: its ``measure.rounds``, else ``default``."""
    measure = config.get("measure") or {}
    value = measure.get("rounds") if isinstance(measure, dict) else None
    return int(value) if isinstance(value, int) and value >= 1 else default


def rounds_needed(url: str, run_ids: Sequence[int], default: int) -> int:
    """The most rounds any timed job of these runs asks for (1: nothing to re-time)."""
    from segbench.store import reads
    from segbench.store.db import open_db

    db = open_db(url, create=False)
    try:
        with db.sessions() as session:
            configs = [dict(job.config) for job in reads.jobs_of_runs(session, run_ids)]
            counts = [wanted_rounds(c, default) for c in configs if "latency" in (c.get("stages") or ())]
    finally:
        db.close()
    return max(counts, default=1)


def retime_command(url: str, run_id: int, default: int) -> list[str]:
    """The command line of one round (run it with the revision's checkout as working directory)."""
    return [sys.executable, "-m", "segbench.regress.retime", "--db", url, "--run", str(run_id)] + [
        "--rounds",
        str(default),
    ]


@contextmanager
def sweep() -> Iterator[None]:
    """Hold this machine's exclusive CPU lock for one sweep of rounds (every revision once).

    The rounds of one sweep then run back to back under the same conditions,
    instead of each queueing behind other work for the lock; between sweeps
    the lock is let go, so training elsewhere goes on.
    """
    from segbench.runner.node_lock import NodeDeviceLock

    with NodeDeviceLock("cpu").exclusive():
        yield


def run_round(
    url: str, run_id: int, default: int, cwd: Path, env: dict[str, str] | None = None
) -> str | None:
    """One round of ``run_id`` in a fresh process, inside a :func:`sweep`; None when it ran, else why not."""
    env = {**(os.environ if env is None else env), LOCK_HELD: "1"}
    proc = subprocess.run(
        retime_command(url, run_id, default), cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode == 0:
        sys.stderr.write(proc.stdout)
        return None
    tail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
    return f"timing round of run {run_id} failed (exit {proc.returncode}): {tail}"


def add_round(url: str, run_id: int, default: int) -> list[str]:
    """In this (fresh) process: one more round for every job of ``run_id`` that wants one; what was done."""
    import torch

    from segbench.jobs import JobSpec
    from segbench.measure.hardware import hardware_identity, hardware_key
    from segbench.runner.node_lock import NodeDeviceLock
    from segbench.runner.pipeline import time_again
    from segbench.store import reads
    from segbench.store.db import open_db
    from segbench.store.recorder import add_timing_round

    db = open_db(url)
    done: list[str] = []
    try:
        with db.sessions() as session:  # read first: no session is held open while the model runs
            jobs = reads.jobs_of_runs(session, [run_id])
        for job in jobs:
            with db.sessions() as session:
                source = reads.source_of(session, job)
                have = reads.timing_round_count(session, source.id, ROUND_METRIC)
            config = dict(source.config)
            if source.status != "done" or "latency" not in config.get("stages", ()):
                continue
            if 1 + have >= wanted_rounds(config, default) or source.hardware is None:
                continue
            spec = JobSpec(**{**config, "stages": tuple(config["stages"])})
            device = source.device or "cpu"
            torch.set_num_threads(int(source.hardware.identity.get("torch_threads") or 1))
            identity = hardware_identity(device, threads=spec.measure.get("threads"))
            if hardware_key(identity) != source.hardware.key:
                done.append(f"{job.label}: not re-timed, this machine is not the one it was measured on")
                continue
            held = device != "cpu" or os.environ.get(LOCK_HELD)
            lock = nullcontext() if held else NodeDeviceLock("cpu").exclusive()
            with lock:
                stats = time_again(spec, device)
            number = add_timing_round(
                db, source.id, ROUND_METRIC, stats.median_ms, list(stats.samples_ms), os.getpid()
            )
            done.append(f"{job.label}: round {number} {stats.median_ms:.2f} ms")
    finally:
        db.close()
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segbench.regress.retime", description=__doc__)
    parser.add_argument("--db", required=True, help="database URL (absolute)")
    parser.add_argument("--run", type=int, required=True, help="the run whose jobs get one more round")
    parser.add_argument(
        "--rounds", type=int, default=AT_ROUNDS, help="rounds a job without measure.rounds gets"
    )
    args = parser.parse_args(argv)
    try:
        for line in add_round(args.db, args.run, args.rounds):
            print(f"  {line}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
