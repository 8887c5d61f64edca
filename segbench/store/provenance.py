"""Where a number came from: git state of the code, versions, host.

Two repositories matter: segbench's own (its models and measurement code) and
the one the suite file lives in (a user's import-path models live there). A
result's ``code_id`` combines both; the same job key at the same code_id is the
same experiment, which is what lets a re-run skip finished jobs and what
regression tracking compares across.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import segbench

#: Untracked files with these suffixes are code: Python that a suite may import, and the sources of
#: extensions it may build. Anything else untracked (data, weights, notes, plots, a suite file being
#: drafted — its text is recorded with the run anyway) leaves the tree clean.
CODE_SUFFIXES = (".py", ".pyx", ".pxd", ".c", ".cc", ".cpp", ".cxx", ".h", ".hpp", ".cu", ".cuh")
#: Files SQLite keeps beside a database file.
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal", ".migrate.lock")


@dataclass(frozen=True)
class GitState:
    commit: str | None
    branch: str | None
    dirty: bool | None
    #: hash of the uncommitted diff, so two different dirty trees never look alike
    diff_hash: str | None
    root: str | None
    #: the paths (relative to ``root``) that made the tree dirty, so a user can see why
    dirty_paths: tuple[str, ...] = ()

    def identity(self) -> str:
        if self.commit is None:
            return "nogit"
        return self.commit + (f"+dirty.{self.diff_hash}" if self.dirty else "")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    # file names are bytes: undecodable ones survive as surrogates, so they still name the file
    return os.fsdecode(out.stdout)


def run_outputs(db_file: Path | None, workdir: Path | None) -> tuple[Path, ...]:
    """What a run writes itself: the SQLite file and its companions, and the work directory."""
    outputs = [db_file.with_name(db_file.name + suffix) for suffix in SQLITE_COMPANIONS] if db_file else []
    return (*outputs, *([workdir] if workdir else []))


def _exclusions(root: Path, outputs: tuple[Path, ...]) -> list[str]:
    """Pathspecs leaving out each output inside ``root`` (literal: odd file names stay file names)."""
    specs = []
    for output in outputs:
        try:
            rel = output.resolve().relative_to(root)
        except ValueError:
            continue  # outside this repository: git never sees it
        if rel.parts:
            specs.append(f":(exclude,literal){rel.as_posix()}")
    return specs


def _dirty_paths(root: Path, exclude: list[str]) -> tuple[list[str], list[str]]:
    """(tracked paths with uncommitted changes, untracked code files), segbench's outputs left out.

    ``-z`` output is NUL-separated and unquoted, so names with spaces, quotes or
    newlines come back as they are; a rename entry is followed by its origin.
    """
    status = _git(["status", "--porcelain=v1", "-z", "--untracked-files=no", "--", ":/", *exclude], root)
    tracked: list[str] = []
    entries = iter((status or "").split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        tracked.append(entry[3:])
        if entry[0] in "RC":
            next(entries, None)  # the rename's origin
    code = [f":(glob)**/*{suffix}" for suffix in CODE_SUFFIXES]
    others = _git(["ls-files", "--others", "--exclude-standard", "-z", "--", *code, *exclude], root)
    untracked = [name for name in (others or "").split("\0") if name]
    return tracked, untracked


def _diff_hash(root: Path, exclude: list[str], untracked: list[str]) -> str:
    """Hash of the tracked diff plus the names and contents of the untracked code files."""
    digest = hashlib.sha256()
    diff = subprocess.run(
        ["git", "diff", "HEAD", "--binary", "--", ":/", *exclude], cwd=root, capture_output=True, timeout=60
    )
    digest.update(diff.stdout)
    for name in sorted(untracked):
        digest.update(b"\0untracked\0" + os.fsencode(name) + b"\0")
        try:
            digest.update((root / name).read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
    return digest.hexdigest()[:12]


def git_state(path: Path | str, outputs: tuple[Path, ...] = ()) -> GitState:
    """Git state of the repository containing ``path`` (all None outside git).

    Dirty means the *code* differs from the commit: a tracked file modified,
    staged, deleted or renamed, or an untracked file with a code suffix
    (:data:`CODE_SUFFIXES`). segbench's own ``outputs`` (see :func:`run_outputs`)
    never count, wherever they are and whatever they are called, so a results
    database inside the repository does not make every run uncommitted.
    """
    path = Path(path).resolve()
    cwd = path if path.is_dir() else path.parent
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    if top is None:
        return GitState(None, None, None, None, None)
    root = Path(top.strip())
    commit = (_git(["rev-parse", "HEAD"], root) or "").strip() or None
    branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], root) or "").strip() or None
    exclude = _exclusions(root, outputs)
    tracked, untracked = _dirty_paths(root, exclude)
    changed = sorted(set(tracked) | set(untracked))
    diff_hash = _diff_hash(root, exclude, untracked) if changed else None
    # recorded as JSON text: an undecodable byte in a name is shown as U+FFFD
    shown = tuple(os.fsencode(name).decode("utf-8", "replace") for name in changed)
    return GitState(commit, branch, bool(changed), diff_hash, str(root), shown)


def segbench_git_state(outputs: tuple[Path, ...] = ()) -> GitState:
    return git_state(Path(segbench.__file__).parent, outputs)


def code_id(segbench_git: GitState, suite_git: GitState) -> str:
    """One id for 'the code that produced these numbers'."""
    parts = [segbench_git.identity()]
    if suite_git.root != segbench_git.root:
        parts.append(suite_git.identity())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Versions of what decides the numbers; torch is only *queried*, never imported here."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {
            name: _version(name)
            for name in ("torch", "torchvision", "fvcore", "numpy", "sqlalchemy", "pandas", "pillow")
        },
    }


def host() -> str:
    return socket.gethostname()


def as_dict(state: GitState) -> dict[str, Any]:
    return asdict(state)
