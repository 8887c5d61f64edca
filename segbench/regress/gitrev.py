"""Git questions regression tracking asks: which commit is this revision, what came before what.

Results are filed under commit hashes; users speak in branches, tags and
``HEAD~3``. Ancestry order comes from ``git rev-list --topo-order``, never from
timestamps: a rebased or cherry-picked commit can be older by the clock and
newer in history.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from segbench.errors import UserError, did_you_mean


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:10]


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run git in ``repo``; an absent git binary is a UserError, a failing command is returned."""
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UserError("git is not installed, but revisions can only be resolved with git") from None


def repo_root(path: Path) -> Path | None:
    """Top level of the git repository holding ``path`` (a file or folder); None outside git."""
    path = path.resolve()
    cwd = path if path.is_dir() else path.parent
    if not cwd.is_dir():
        return None
    out = git(cwd, "rev-parse", "--show-toplevel")
    return Path(out.stdout.strip()) if out.returncode == 0 else None


def require_repo(path: Path, option: str = "--repo") -> Path:
    root = repo_root(path)
    if root is None:
        raise UserError(f"{option} {path}: not inside a git repository")
    return root


def resolve_commit(repo: Path, revision: str) -> str | None:
    """The full hash ``revision`` names in ``repo`` (branch, tag, ``HEAD~2``, short hash), or None."""
    if revision.startswith("-"):
        return None  # never let a revision become a git option
    out = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}")
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def ref_names(repo: Path) -> list[str]:
    """Branch and tag names, for "did you mean"."""
    out = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads", "refs/tags", "refs/remotes")
    return out.stdout.split() if out.returncode == 0 else []


def ancestry(repo: Path, tip: str = "HEAD", since: str | None = None) -> list[CommitInfo]:
    """Commits reachable from ``tip`` in topological order, oldest first.

    With ``since``, only the commits on the ancestry path from ``since`` to
    ``tip`` (both included), i.e. the history between two points, not the
    unrelated branches merged in along the way.
    """
    tip_sha = _must_resolve(repo, tip, "history tip")
    args = ["log", "--topo-order", "--reverse", "--format=%H%x00%s"]
    commits: list[CommitInfo] = []
    if since is not None:
        since_sha = _must_resolve(repo, since, "--since")
        if git(repo, "merge-base", "--is-ancestor", since_sha, tip_sha).returncode != 0:
            raise UserError(f"--since {since}: not an ancestor of {tip}, so there is no history between them")
        commits.append(_one(repo, since_sha))
        args += ["--ancestry-path", f"{since_sha}..{tip_sha}"]
    else:
        args.append(tip_sha)
    out = git(repo, *args)
    if out.returncode != 0:
        raise UserError(f"git log in {repo} failed: {out.stderr.strip()}")
    for line in out.stdout.splitlines():
        sha, _, subject = line.partition("\x00")
        commits.append(CommitInfo(sha, subject))
    return commits


def _one(repo: Path, sha: str) -> CommitInfo:
    out = git(repo, "log", "-1", "--format=%H%x00%s", sha)
    full, _, subject = out.stdout.strip().partition("\x00")
    return CommitInfo(full or sha, subject)


def _must_resolve(repo: Path, revision: str, what: str) -> str:
    sha = resolve_commit(repo, revision)
    if sha is None:
        raise UserError(
            f"{what} '{revision}': not a revision in {repo}{did_you_mean(revision, ref_names(repo))}"
        )
    return sha
