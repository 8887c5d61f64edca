"""Timing rounds in lockstep: fresh processes, one per revision, taking turns burst by burst.

Why fresh processes: the samples of one measurement vary by 1–4 %, but two
processes running identical code differ by several per cent (allocator state,
memory layout, thread placement), so a decision on one process's samples
calls that difference a regression. A timing is therefore measured in
*rounds*: round 0 is the job's own measurement in its run; every later round
re-times the recorded job in a new worker process
(``python -m segbench.regress.retime``), which rebuilds the model from the
job's config (same seed, same settings, same thread count).

Why lockstep: on a shared machine the *speed of the machine itself* moves —
measured on the 2-core development VM with nothing else running, one
process's median over 250 ms windows went 0.85 → 1.60 ms and back within
seconds, and a pure-Python loop timed alongside moved with it (a neighbour on
the host, not anything in the process; CPU time moves as wall time does). A
round timed in one go lands wholly in a fast or a slow spell, so rounds of
identical code differ by up to 2× and hide a 2× slowdown. In a *sweep*, one
worker per revision is started, each builds and warms up the job, and the
driver then has them time bursts of a few calls in turn (A B, B A, A B, …;
the order rotates so no revision always goes first), each burst a few
milliseconds: burst ``i`` of every revision falls in the same spell of the
machine, and the ratio of the two is what the revisions differ by
(:func:`segbench.regress.rounds.lockstep_differences`). Every sweep is fresh
processes again, so the rounds still sample what differs between processes.
The driver records each worker's round with the sweep's id and burst size
(:func:`segbench.store.rounds.add_timing_round`); workers never write.

``run --at A,B`` runs its rounds as sweeps of all its revisions; a plain
``segbench run`` with ``measure.rounds`` (or ``--rounds``) runs sweeps of its
one run, which are ordinary rounds in fresh processes. A job gets a round only
while it has fewer than it wants (its ``measure.rounds``, else the driver's
default), on the machine it was measured on (same hardware key); rounds are
numbered after the ones it has, so a re-timed cached job accumulates rounds.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segbench.errors import UserError

if TYPE_CHECKING:
    from segbench.store.reads import JobRecord

#: ``run --at`` times this many rounds per job unless the suite says otherwise (``measure.rounds``)
AT_ROUNDS = 8
#: set in a ``run --at`` child: the driver interleaves the rounds, the child runs none of its own
ROUNDS_BY_DRIVER = "SEGBENCH_ROUNDS_BY_DRIVER"
#: the timing that is re-measured; throughput is derived from it (batch / median)
ROUND_METRIC = "latency_ms"
#: a burst lasts about this long: well inside a spell of the machine's speed (hundreds of ms)
BURST_MS = 5.0
#: at most this many calls a burst, at least this many bursts a round
MAX_BURST = 5
MIN_BURSTS = 10


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


# ---------------------------------------------------------------- the driver's side


@dataclass(frozen=True)
class Member:
    """One revision's run in a sweep: where its worker runs, and what the messages call it."""

    run_id: int
    name: str
    cwd: Path
    env: dict[str, str] | None = None


@dataclass(eq=False)
class _Worker:
    member: Member
    proc: subprocess.Popen[bytes]
    conn: Connection
    log: Any
    #: job_key → (source job id, label) of the jobs it can time
    jobs: dict[str, tuple[int, str]] = field(default_factory=dict)
    gone: str | None = None

    def ask(self, message: tuple[Any, ...]) -> Any:
        """Send ``message`` and wait for the answer; a worker that dies meanwhile raises :class:`_Gone`."""
        try:
            self.conn.send(message)
            while not self.conn.poll(1.0):
                if self.proc.poll() is not None and not self.conn.poll(0):
                    raise EOFError
            return self.conn.recv()
        except (EOFError, OSError):
            self.proc.wait()
            self.log.seek(0)
            lines = self.log.read().decode(errors="replace").strip().splitlines() or ["(no message)"]
            self.gone = f"its timing round failed (exit {self.proc.returncode}): {lines[-1]}"
            raise _Gone from None


class _Gone(Exception):
    """A worker ended before answering; its ``gone`` says why."""


def lockstep_sweep(
    url: str, members: Sequence[Member], default: int, say: Callable[[str], None]
) -> list[tuple[Member, str]]:
    """One round for every job of ``members`` that wants one, their workers taking turns; who failed, why.

    The caller holds the device (:func:`hold_cpu`). A worker that fails costs
    its own round only; the others' are recorded.
    """
    from segbench.store.db import open_db
    from segbench.store.rounds import add_timing_round

    sweep = uuid.uuid4().hex
    with ExitStack() as stack:
        workers = [stack.enter_context(_started(url, m, default)) for m in members]
        for w in workers:
            try:
                announced, notes = w.ask(("jobs",))
                w.jobs = dict(announced)
                for note in notes:
                    say(f"  {w.member.name}: {note}")
            except _Gone:
                pass
        keys = list(dict.fromkeys(key for w in workers if w.gone is None for key in w.jobs))
        db = open_db(url)
        stack.callback(db.close)
        for key in keys:
            timed = _take_turns(key, [w for w in workers if w.gone is None and key in w.jobs])
            words = []
            for w, (samples, burst) in timed.items():
                source, label = w.jobs[key]
                median = statistics.median(samples)
                number = add_timing_round(
                    db, source, ROUND_METRIC, median, samples, w.proc.pid, sweep=sweep, burst=burst
                )
                words.append(f"{w.member.name} round {number} {median:.2f} ms")
            if timed:
                say(f"  {next(iter(timed)).jobs[key][1]}: " + ", ".join(words))
        for w in workers:
            if w.gone is None:
                w.conn.send(("done",))
    return [(w.member, gone) for w in workers if (gone := w.gone) is not None]


def _take_turns(key: str, workers: list[_Worker]) -> dict[_Worker, tuple[list[float], int]]:
    """Prepare ``key`` in each worker, then time bursts in turn; each worker's samples and burst size.

    A cached job shares its source with another revision's: it is timed once,
    by the first worker that gets it ready.
    """
    ready: list[tuple[_Worker, float, int]] = []
    sources: set[int] = set()
    for w in workers:  # one at a time: a warm-up is not timed against another's
        if w.jobs[key][0] in sources:
            continue
        try:
            warm_ms, iters = w.ask(("prepare", key))
        except _Gone:
            continue
        ready.append((w, warm_ms, iters))
        sources.add(w.jobs[key][0])
    if not ready:
        return {}
    slowest = max(ms for _, ms, _ in ready)
    burst = max(1, min(MAX_BURST, round(BURST_MS / slowest) if slowest > 0 else MAX_BURST))
    bursts = max(MIN_BURSTS, math.ceil(max(iters for _, _, iters in ready) / burst))
    samples: dict[_Worker, list[float]] = {w: [] for w, _, _ in ready}
    order = [w for w, _, _ in ready]
    for i in range(bursts):
        turn = order[i % len(order) :] + order[: i % len(order)]
        for w in turn:
            if w.gone is not None:
                continue
            try:
                samples[w] += w.ask(("time", burst))
            except _Gone:
                del samples[w]
    return {w: (s, burst) for w, s in samples.items() if s}


@contextmanager
def _started(url: str, member: Member, default: int) -> Iterator[_Worker]:
    """A worker process for ``member``'s run, talking over a socket pair; stopped on the way out."""
    ours, theirs = socket.socketpair()
    command = [sys.executable, "-m", "segbench.regress.retime", "--db", url, "--run", str(member.run_id)]
    command += ["--rounds", str(default), "--fd", str(theirs.fileno())]
    env = {**(os.environ if member.env is None else member.env)}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command,
            cwd=member.cwd,
            env=env,
            pass_fds=(theirs.fileno(),),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        theirs.close()
        conn = Connection(ours.detach())
        try:
            yield _Worker(member, proc, conn, log)
        finally:
            conn.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def hold_cpu() -> Iterator[None]:
    """Hold this machine's exclusive CPU lock for one sweep.

    The workers of a sweep then time under the same conditions, instead of
    each queueing behind other work; between sweeps the lock is let go, so
    training elsewhere goes on.
    """
    from segbench.runner.node_lock import NodeDeviceLock

    with NodeDeviceLock("cpu").exclusive():
        yield


# ---------------------------------------------------------------- the worker's side


def serve(conn: Connection, url: str, run_id: int, default: int) -> None:
    """Answer the driver: which jobs of ``run_id`` want a round, then prepare and time them on request."""
    from segbench.jobs import JobSpec
    from segbench.measure.hardware import hardware_identity, hardware_key
    from segbench.measure.timing import warm_up
    from segbench.runner.pipeline import ready_to_time
    from segbench.store import reads
    from segbench.store.db import open_db

    db = open_db(url, create=False)
    try:
        with db.sessions() as session:
            jobs = reads.jobs_of_runs(session, [run_id])
            chosen: dict[str, tuple[reads.JobRecord, JobSpec]] = {}
            notes: list[str] = []
            for job in jobs:
                source = reads.source_of(session, job)
                config = dict(source.config)
                if source.status != "done" or "latency" not in config.get("stages", ()):
                    continue
                have = reads.timing_round_count(session, source.id, ROUND_METRIC)
                if 1 + have >= wanted_rounds(config, default) or source.hardware is None:
                    continue
                spec = JobSpec(**{**config, "stages": tuple(config["stages"])})
                _threads_as_measured(source)
                identity = hardware_identity(source.device or "cpu", threads=spec.measure.get("threads"))
                if hardware_key(identity) != source.hardware.key:
                    notes.append(f"{job.label}: not re-timed, this machine is not the one it was measured on")
                    continue
                chosen[job.job_key] = (source, spec)
    finally:
        db.close()
    with ExitStack() as current:
        timed: Any = None
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message[0] == "jobs":
                conn.send(([(key, (s.id, s.label)) for key, (s, _) in chosen.items()], notes))
            elif message[0] == "prepare":
                current.close()  # the previous job's model goes before the next is built
                source, spec = chosen[message[1]]
                _threads_as_measured(source)
                timed = current.enter_context(ready_to_time(spec, source.device or "cpu"))
                warm = warm_up(timed.call, int(spec.measure.get("warmup") or 0))
                tail = warm.samples_ms[-max(1, len(warm.samples_ms) // 2) :] or [timed.call()]
                conn.send((statistics.median(tail), int(spec.measure.get("iters") or 1)))
            elif message[0] == "time":
                conn.send([timed.call() for _ in range(message[1])])
            elif message[0] == "done":
                return


def _threads_as_measured(source: JobRecord) -> None:
    """The torch thread count the job was measured with (its hardware key includes it)."""
    import torch

    assert source.hardware is not None  # jobs without a hardware record are never chosen
    torch.set_num_threads(int(source.hardware.identity.get("torch_threads") or 1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segbench.regress.retime", description=__doc__)
    parser.add_argument("--db", required=True, help="database URL (absolute)")
    parser.add_argument("--run", type=int, required=True, help="the run whose jobs get one more round")
    parser.add_argument(
        "--rounds", type=int, default=AT_ROUNDS, help="rounds a job without measure.rounds gets"
    )
    parser.add_argument("--fd", type=int, required=True, help="the socket the driver talks over")
    args = parser.parse_args(argv)
    conn = Connection(args.fd)
    try:
        serve(conn, args.db, args.run, args.rounds)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
