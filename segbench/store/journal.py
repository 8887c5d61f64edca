"""Results the database could not take yet, kept on disk until it can.

When recording a finished job fails for a reason that is the database's, not
the job's (locked past the busy timeout, the connection lost), the result is
appended to a journal file before anything else is tried: one JSON line per
result, with the run's uid and the job's id, flushed and fsync'd. The next
command that opens the database for writing replays it (``Recorder.replay``);
a replayed entry whose job already holds its numbers is dropped, so replaying
twice records nothing twice.

Where: a SQLite database keeps its journal beside the file
(``segbench.db.journal.jsonl``), so the two move together; any other database
keeps it under ``$XDG_CACHE_HOME/segbench/journals/`` (``~/.cache``), named by
a hash of the URL without its password. An ``flock`` on the journal keeps
writers and replays of several processes apart.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from segbench.jobs import ArtifactValue, EvidenceValue, JobResult, MetricValue, SeriesValue


@dataclass(frozen=True)
class Entry:
    run_uid: str
    job_id: int
    result: JobResult


def journal_path(url: str) -> Path:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return Path(f"{parsed.database}.journal.jsonl")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = hashlib.sha256(parsed.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return cache / "segbench" / "journals" / f"{name}.jsonl"


def encode(result: JobResult) -> dict[str, Any]:
    """The result as JSON-ready data; bytes (artifacts, per-image evidence) as base64."""
    doc = asdict(result)
    doc["artifacts"] = [{**a, "data": _text(a["data"])} for a in doc["artifacts"]]
    if doc["evidence"] is not None:
        doc["evidence"] = {**doc["evidence"], "data": _text(doc["evidence"]["data"])}
    return doc


def _text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode(doc: dict[str, Any]) -> JobResult:
    doc = dict(doc)
    metrics = [MetricValue(**m) for m in doc.pop("metrics")]
    series = [SeriesValue(**s) for s in doc.pop("series")]
    artifacts = [
        ArtifactValue(a["name"], a["media_type"], base64.b64decode(a["data"])) for a in doc.pop("artifacts")
    ]
    evidence = doc.pop("evidence", None)
    if evidence is not None:
        evidence = EvidenceValue(**{**evidence, "data": base64.b64decode(evidence["data"])})
    return JobResult(metrics=metrics, series=series, artifacts=artifacts, evidence=evidence, **doc)


class Journal:
    """The journal file of one database."""

    def __init__(self, url: str) -> None:
        self.path = journal_path(url)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def append(self, run_uid: str, job_id: int, result: JobResult) -> None:
        """Keep ``result`` durably (flushed and fsync'd) before the caller tries anything else."""
        line = json.dumps({"run_uid": run_uid, "job_id": job_id, "result": encode(result)})
        with self._locked(), open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def entries(self) -> list[Entry]:
        if not self.exists():
            return []
        with self._locked():
            return self._read()

    def _read(self) -> list[Entry]:
        """Every entry; a line cut short by a crash while it was written is skipped.

        Such a result was never acknowledged as kept: its job is still
        unrecorded, and the run shows it unfinished.
        """
        entries = []
        if self.path.exists():
            for text in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    doc = json.loads(text)
                    entries.append(Entry(doc["run_uid"], int(doc["job_id"]), decode(doc["result"])))
                except (ValueError, KeyError, TypeError):
                    continue
        return entries

    @contextmanager
    def replaying(self) -> Iterator[tuple[list[Entry], list[Entry]]]:
        """The entries, and a list to put those still not recorded in; the file keeps only those."""
        with self._locked():
            entries = self._read()
            kept: list[Entry] = []
            yield entries, kept
            if not kept:
                self.path.unlink(missing_ok=True)
                return
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                for e in kept:
                    fh.write(
                        json.dumps({"run_uid": e.run_uid, "job_id": e.job_id, "result": encode(e.result)})
                    )
                    fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
