"""``segbench run SUITE --at REV1,REV2,…``: fill in history after the fact.

For each revision a temporary ``git worktree`` of the suite's repository is
checked out, and ``segbench run`` runs there as a subprocess with the worktree
as its working directory, so the import-path models it imports are the ones
at that revision (and, when the suite lives in segbench's own repository,
segbench itself is). Results go to one database given as an absolute URL, and
the worktrees are removed afterwards whatever happened.

Timings are then measured in rounds: after the full run at every revision
(round 0), each further round is a *lockstep sweep* — a fresh worker process
per revision, in its worktree, the workers timing bursts of a few calls in
turn (:mod:`segbench.regress.retime`). airspeed velocity interleaves whole
rounds between revisions (``--interleave-rounds``); taking turns burst by
burst goes further: the speed of a shared machine changes within seconds, and
only bursts milliseconds apart see the same machine, so the verdicts compare
them pairwise (:mod:`segbench.regress.rounds`) and still see, sweep by sweep,
how much a timing moves between processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from segbench.errors import UserError, did_you_mean
from segbench.regress import gitrev
from segbench.regress.retime import (
    AT_ROUNDS,
    ROUNDS_BY_DRIVER,
    Member,
    hold_cpu,
    lockstep_sweep,
    rounds_needed,
)


def split_revisions(text: str) -> list[str]:
    """``"v1,main,HEAD~2"`` → the revisions, in order; empty items are an error."""
    revisions = [part.strip() for part in text.split(",")]
    if not revisions or any(not r for r in revisions):
        raise UserError(f"--at '{text}': expected comma-separated revisions like 'v1.0,main,HEAD'")
    return revisions


def absolute_db_url(url: str) -> str:
    """The URL with a relative SQLite path made absolute (the subprocess runs elsewhere)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from segbench.store.db import resolve_url

    try:
        parsed = make_url(resolve_url(url))
    except ArgumentError:
        raise UserError(
            f"--db: '{url}' is not a database URL (e.g. sqlite:///results/segbench.db, or a file path)"
        ) from None
    if parsed.get_backend_name() != "sqlite":
        return parsed.render_as_string(hide_password=False)
    if not parsed.database or parsed.database == ":memory:":
        raise UserError(
            "--at needs a database file or server: an in-memory SQLite database dies with each run"
        )
    return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)


def run_at_revisions(
    suite: Path, revisions: list[str], extra_args: list[str], db_url: str, *, rounds: int = AT_ROUNDS
) -> list[int]:
    """Run ``suite`` as it is at each revision of its repository; return the recorded run ids in order.

    Every revision is resolved before anything runs, so a typo costs nothing.
    A revision at which the suite file does not exist, or at which
    ``segbench run`` rejects its input, is a UserError; a run whose jobs fail
    is still recorded and its id returned (``segbench run`` reports the failures).
    ``rounds`` is how many timing rounds a job gets when its suite does not say
    (``measure.rounds``); a round that cannot run (an old segbench at that
    revision) is a warning, and the verdicts then say the timing has too few rounds.
    """
    suite = suite.resolve()
    if not suite.is_file():
        raise UserError(f"{suite}: no such suite file")
    repo = gitrev.repo_root(suite)
    if repo is None:
        raise UserError(f"--at: {suite} is not inside a git repository, so it has no revisions to run at")
    relative = suite.relative_to(repo.resolve())
    url = absolute_db_url(db_url)
    commits = [(rev, _resolve(repo, rev)) for rev in revisions]
    scratch = Path(tempfile.mkdtemp(prefix="segbench-at-")).resolve()
    trees: list[Path] = []
    try:
        run_ids: list[int] = []
        for i, (revision, commit) in enumerate(commits):
            trees.append(_checkout(repo, scratch / f"{i}-{commit[:12]}", revision, commit))
            run_ids.append(_run_at(trees[-1], relative, revision, commit, extra_args, url))
        _interleaved_rounds(url, run_ids, revisions, trees, rounds)
        return run_ids
    finally:
        for tree in trees:
            gitrev.git(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(scratch, ignore_errors=True)
        gitrev.git(repo, "worktree", "prune")


def _interleaved_rounds(
    url: str, run_ids: list[int], revisions: list[str], trees: list[Path], default: int
) -> None:
    """Rounds 1 … N-1: each a lockstep sweep of every revision still able to take part."""
    total = rounds_needed(url, run_ids, default)
    members = [
        Member(run_id, revision, tree, _child_env())
        for run_id, revision, tree in zip(run_ids, revisions, trees, strict=True)
    ]
    for number in range(1, total):
        sys.stderr.write(f"timing round {number + 1}/{total}: {len(members)} revisions in lockstep\n")
        with hold_cpu():
            problems = lockstep_sweep(url, members, default, lambda line: sys.stderr.write(line + "\n"))
        for member, problem in problems:
            sys.stderr.write(f"warning: --at {member.name}: {problem}; its timings keep fewer rounds\n")
        failed = {member.run_id for member, _ in problems}
        members = [m for m in members if m.run_id not in failed]


def _resolve(repo: Path, revision: str) -> str:
    sha = gitrev.resolve_commit(repo, revision)
    if sha is None:
        raise UserError(
            f"--at '{revision}': not a revision in {repo}{did_you_mean(revision, gitrev.ref_names(repo))}"
        )
    return sha


def _checkout(repo: Path, worktree: Path, revision: str, commit: str) -> Path:
    added = gitrev.git(repo, "worktree", "add", "--detach", str(worktree), commit)
    if added.returncode != 0:
        raise UserError(f"--at {revision}: git worktree add failed: {added.stderr.strip()}")
    return worktree


def _run_at(
    worktree: Path, relative: Path, revision: str, commit: str, extra_args: list[str], url: str
) -> int:
    suite_there = worktree / relative
    if not suite_there.is_file():
        raise UserError(f"--at {revision}: the suite {relative} does not exist at {commit[:10]}")
    command = [sys.executable, "-m", "segbench", "run", str(suite_there), "--db", url, *extra_args]
    proc = subprocess.run(command, cwd=worktree, env=_child_env())
    run_id = _recorded_run(url, worktree)
    if run_id is None:
        raise UserError(
            f"--at {revision}: `segbench run` at {commit[:10]} exited with {proc.returncode} "
            "without recording a run (its message is above)"
        )
    if proc.returncode == 130:
        raise UserError(f"--at {revision}: interrupted; the jobs it finished are recorded in run {run_id}")
    return run_id


def _child_env() -> dict[str, str]:
    """This segbench stays importable in the child; bytecode files would make the worktree dirty.

    The worktree itself comes first on ``sys.path`` (``python -m`` puts the
    working directory there), so a worktree of segbench's own repository runs
    its own segbench, as the revision asks.
    """
    import segbench

    here = str(Path(segbench.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    entries = [p for p in path.split(os.pathsep) if p]
    if here not in entries:
        entries.append(here)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(entries),
        "PYTHONDONTWRITEBYTECODE": "1",
        ROUNDS_BY_DRIVER: "1",
    }


def _recorded_run(url: str, worktree: Path) -> int | None:
    """The run recorded from this worktree (its path is unique to this call)."""
    from segbench.store import reads
    from segbench.store.db import open_db

    try:
        db = open_db(url, create=False)
    except UserError:
        return None  # the run failed before it created the database
    try:
        with db.sessions() as session:
            return reads.latest_run_under(session, str(worktree))
    finally:
        db.close()
