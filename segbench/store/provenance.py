"""Where a number came from: git state of the code, versions, host.

Two repositories matter: segbench's own (its models and measurement code) and
the one the suite file lives in (a user's import-path models live there). A
result's ``code_id`` combines both; the same job key at the same code_id is the
same experiment, which is what lets a re-run skip finished jobs and what
regression tracking compares across.
"""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import segbench


@dataclass(frozen=True)
class GitState:
    commit: str | None
    branch: str | None
    dirty: bool | None
    #: hash of the uncommitted diff, so two different dirty trees never look alike
    diff_hash: str | None
    root: str | None

    def identity(self) -> str:
        if self.commit is None:
            return "nogit"
        return self.commit + (f"+dirty.{self.diff_hash}" if self.dirty else "")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_state(path: Path | str) -> GitState:
    """Git state of the repository containing ``path`` (all None outside git)."""
    path = Path(path).resolve()
    cwd = path if path.is_dir() else path.parent
    root = _git(["rev-parse", "--show-toplevel"], cwd)
    if root is None:
        return GitState(None, None, None, None, None)
    commit = (_git(["rev-parse", "HEAD"], cwd) or "").strip() or None
    branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or "").strip() or None
    status = _git(["status", "--porcelain", "--untracked-files=normal"], cwd) or ""
    dirty = bool(status.strip())
    diff_hash = None
    if dirty:
        diff = (_git(["diff", "HEAD"], cwd) or "") + status
        diff_hash = hashlib.sha256(diff.encode()).hexdigest()[:12]
    return GitState(commit, branch, dirty, diff_hash, root.strip())


def segbench_git_state() -> GitState:
    return git_state(Path(segbench.__file__).parent)


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
