"""Builders shared by the regression-tracking tests: real git repositories, real databases.

Results are written through the ORM exactly as the recorder writes them (runs
with git provenance, jobs with hardware, metrics with samples, cached jobs
pointing at their source), so the code under test reads what a real run leaves.
No tests live here.
"""

from __future__ import annotations

import statistics
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from segbench.evidence import FORMAT, Evidence
from segbench.store.db import Database
from segbench.store.schema import Hardware, ImageEvidence, Job, Metric, Run, TimingRound

SEGBENCH_SHA = "5" * 40
_UNITS = {"latency_ms": "ms", "params": "count", "macs": "FLOP", "throughput_ips": "img/s"}


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def init_repo(path: Path) -> Path:
    """An empty repository with a local identity (CI machines have no global one)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "segbench tests")
    git(path, "config", "user.email", "tests@segbench.invalid")
    git(path, "config", "commit.gpgsign", "false")
    return path


def commit_file(repo: Path, name: str, text: str, message: str) -> str:
    """Write ``name``, commit it, return the new commit's hash."""
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def samples(center: float, n: int = 20, spread: float = 0.02) -> list[float]:
    """``n`` distinct timings evenly spread ±``spread`` (relative) around ``center``."""
    return [center * (1 - spread + 2 * spread * i / (n - 1)) for i in range(n)]


@dataclass
class FakeJob:
    """One job's outcome. A metric given as a list is a timing: its samples, headline = median."""

    key: str
    metrics: Mapping[str, float | Sequence[float]] = field(default_factory=dict)
    label: str = "tiny diagnostic"
    model: str = "mymodels:tiny"
    hardware: str | None = "hw-a"
    status: str = "done"
    #: for status "cached": the id of the job holding the numbers
    source_job_id: int | None = None
    #: per-image counts ``[N, 3, C]`` recorded as the job's evidence (see :mod:`segbench.evidence`)
    evidence: np.ndarray | None = None
    #: which images the evidence is of: equal strings are the same images
    images: str = "val 0..N"
    #: a timing's later rounds (1, 2, …: fresh processes), each its samples; round 0 is ``metrics``
    rounds: Mapping[str, Sequence[Sequence[float]]] = field(default_factory=dict)


def record_run(
    db: Database,
    commit: str | None,
    jobs: Sequence[FakeJob],
    *,
    suite: str = "toy",
    dirty: bool = False,
    segbench_commit: str | None = SEGBENCH_SHA,
    segbench_dirty: bool = False,
    status: str = "done",
    uid: str | None = None,
) -> list[int]:
    """Insert one run with ``jobs``; return the job ids in order."""
    ids: list[int] = []
    with db.session() as s:
        run = Run(
            uid=uid or str(uuid.uuid4()),
            suite_name=suite,
            suite_path=f"/work/{suite}.yaml",
            suite_text=f"name: {suite}\n",
            suite_sha="0" * 64,
            suite_commit=commit,
            suite_branch="main",
            suite_dirty=dirty if commit is not None else None,
            segbench_commit=segbench_commit,
            segbench_branch="main",
            segbench_dirty=segbench_dirty,
            code_id=(commit or "nogit")[:16],
            host="testhost",
            segbench_version="0.1.0",
            python_version="3.11",
            command="segbench run",
            environment={},
            started_at=datetime(2024, 1, 1),
            status=status,
        )
        s.add(run)
        s.flush()
        for position, fake in enumerate(jobs):
            hardware_id = _hardware(s, fake.hardware) if fake.hardware else None
            job = Job(
                run_id=run.id,
                job_key=fake.key,
                train_key=fake.key,
                position=position,
                label=fake.label,
                model=fake.model,
                model_label=fake.model.split(":")[-1],
                dataset="diagnostic",
                dataset_label="diagnostic",
                seed=0,
                factors={},
                config={},
                status=fake.status,
                source_job_id=fake.source_job_id,
                hardware_id=hardware_id if fake.status != "cached" else None,
                device="cpu",
                stage_seconds={},
            )
            s.add(job)
            s.flush()
            ids.append(job.id)
            for name, value in fake.metrics.items():
                timed = isinstance(value, Sequence)
                s.add(
                    Metric(
                        job_id=job.id,
                        stage="latency" if timed else "eval",
                        name=name,
                        value=statistics.median(value) if timed else float(value),  # type: ignore[arg-type]
                        unit=_UNITS.get(name, "fraction"),
                        samples=list(value) if timed else None,  # type: ignore[arg-type]
                    )
                )
            for name, later in fake.rounds.items():
                for number, taken in enumerate(later, start=1):
                    s.add(
                        TimingRound(
                            job_id=job.id,
                            metric=name,
                            round=number,
                            value=statistics.median(taken),
                            samples=list(taken),
                            pid=1000 + number,
                            measured_at=datetime(2024, 1, 1),
                        )
                    )
            if fake.evidence is not None:
                evidence = Evidence("diagnostic", "val", fake.images, {"counts": fake.evidence})
                n, _, c = fake.evidence.shape
                s.add(
                    ImageEvidence(
                        job_id=job.id,
                        dataset="diagnostic",
                        split="val",
                        images=n,
                        classes=c,
                        images_sha=fake.images,
                        format=FORMAT,
                        arrays=["counts"],
                        data=evidence.encode(),
                    )
                )
    return ids


def _hardware(s, key: str) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    found = s.scalar(select(Hardware).where(Hardware.key == key))
    if found is None:
        found = Hardware(key=key, cpu_model=f"CPU {key}", cpu_cores=2, identity={"key": key})
        s.add(found)
        s.flush()
    return found.id
