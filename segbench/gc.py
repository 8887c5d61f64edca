"""``segbench gc``: which training checkpoints no job needs any more, and removing them.

Checkpoints live at ``<workdir>/checkpoints/<code_id>/<train_key>.pt``
(:func:`segbench.runner.run.checkpoint_dir`): one per training configuration and
code version, so every commit that retrains adds a set and nothing removes them.
The database says which are still needed. A checkpoint is

* **needed** while a job recorded at its code_id with its train_key is pending,
  running, interrupted or failed: the next run resumes from it. Never removed.
* **finished** when every such job is done (or cached). Per train_key the
  ``keep`` newest finished checkpoints (by modification time, across code
  versions) stay, so the latest weights of each training configuration can be
  evaluated again; older ones are removed.
* **unknown** when no job in this database has its code_id and train_key: it may
  belong to another database sharing the workdir, so it is listed and kept.

Temporary files of an interrupted checkpoint write (``.<train_key>.pt.<pid>.tmp``)
go with their checkpoint when it is finished: no job is left to be writing them.
Nothing is deleted unless asked (``--yes``); the default lists what would go.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from segbench.errors import UserError
from segbench.store import reads
from segbench.store.db import Database

#: job states whose next run resumes from the checkpoint
UNFINISHED = frozenset({"pending", "running", "interrupted", "failed"})


@dataclass(frozen=True)
class CheckpointFile:
    path: Path
    code_id: str
    train_key: str
    size: int
    mtime: float
    #: "needed", "finished" or "unknown"
    state: str


@dataclass
class GcPlan:
    remove: list[CheckpointFile]
    keep: list[CheckpointFile]

    @property
    def freed(self) -> int:
        return sum(f.size for f in self.remove)


def _train_key(path: Path) -> str:
    """``k.pt`` and its temporary ``.k.pt.<pid>.tmp`` both belong to train key ``k``."""
    name = path.name
    if name.startswith(".") and name.endswith(".tmp"):
        name = name[1:].rsplit(".", 2)[0]
    return name.removesuffix(".pt")


def scan(root: Path) -> list[tuple[Path, str, str]]:
    """(file, code_id, train_key) for every checkpoint or checkpoint temp file under ``root``."""
    if not root.is_dir():
        return []
    found = []
    for code_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(code_dir.iterdir()):
            if path.is_file() and (path.suffix == ".pt" or path.name.endswith(".tmp")):
                found.append((path, code_dir.name, _train_key(path)))
    return found


def plan_gc(db: Database, workdir: Path, keep: int = 1) -> GcPlan:
    """Sort the checkpoints under ``workdir`` into those to remove and those to keep (see the module)."""
    if keep < 0:
        raise UserError(f"--keep {keep}: must be 0 or more")
    with db.sessions() as s:
        statuses = reads.training_states(s)
    files = []
    for path, code_id, train_key in scan(workdir / "checkpoints"):
        seen = statuses.get((code_id, train_key))
        state = "unknown" if seen is None else "needed" if seen & UNFINISHED else "finished"
        st = path.stat()
        files.append(CheckpointFile(path, code_id, train_key, st.st_size, st.st_mtime, state))
    remove, kept = [], []
    finished: dict[str, list[CheckpointFile]] = defaultdict(list)
    for f in files:
        if f.state != "finished":
            kept.append(f)
        elif f.path.suffix != ".pt":
            remove.append(f)  # a finished training's leftover temp file
        else:
            finished[f.train_key].append(f)
    for group in finished.values():
        group.sort(key=lambda f: f.mtime, reverse=True)
        kept += group[:keep]
        remove += group[keep:]
    return GcPlan(sorted(remove, key=lambda f: str(f.path)), sorted(kept, key=lambda f: str(f.path)))


def apply_gc(plan: GcPlan) -> None:
    """Delete what ``plan`` removes, then code-version folders left empty."""
    for f in plan.remove:
        f.path.unlink(missing_ok=True)
    for folder in {f.path.parent for f in plan.remove}:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
