"""The results database schema (SQLAlchemy 2.0 typed ORM).

Runs hold provenance (suite text, git state of segbench and of the suite's
repository, versions); jobs hold one experiment each; metrics hold one number
each, with its unit, its stage and, where it was measured repeatedly, the raw
samples. A (job, metric name) pair is unique: a recorded value is never
silently overwritten — a re-measurement is a new job.

Changing this file means adding an Alembic revision under ``migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JOB_STATUSES = ("pending", "running", "done", "failed", "cached", "interrupted")
RUN_STATUSES = ("running", "done", "failed", "interrupted")
#: Why a job failed. Only ``model`` (the model or its stage raised) is the experiment's own
#: outcome and stays cached on a re-run; ``lost`` (its worker died, or the checkpoint it needed
#: did), ``infrastructure`` (the database refused it) and ``interrupted`` are retried.
FAILURE_KINDS = ("model", "lost", "infrastructure", "interrupted")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Hardware(Base):
    """A machine identity; timings are only comparable within one ``key``."""

    __tablename__ = "hardware"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    cpu_model: Mapped[str | None] = mapped_column(String(200))
    cpu_cores: Mapped[int | None] = mapped_column(Integer)
    gpu_name: Mapped[str | None] = mapped_column(String(200))
    gpu_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    identity: Mapped[dict[str, Any]] = mapped_column(JSON)


class Run(Base):
    """One invocation of ``segbench run`` on one suite."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    suite_name: Mapped[str] = mapped_column(String(200), index=True)
    suite_path: Mapped[str] = mapped_column(Text)
    suite_text: Mapped[str] = mapped_column(Text)
    suite_sha: Mapped[str] = mapped_column(String(64))
    suite_commit: Mapped[str | None] = mapped_column(String(64), index=True)
    suite_branch: Mapped[str | None] = mapped_column(String(200))
    suite_dirty: Mapped[bool | None]
    segbench_commit: Mapped[str | None] = mapped_column(String(64), index=True)
    segbench_branch: Mapped[str | None] = mapped_column(String(200))
    segbench_dirty: Mapped[bool | None]
    code_id: Mapped[str] = mapped_column(String(64), index=True)
    host: Mapped[str] = mapped_column(String(200))
    segbench_version: Mapped[str] = mapped_column(String(40))
    torch_version: Mapped[str | None] = mapped_column(String(80))
    cuda_version: Mapped[str | None] = mapped_column(String(40))
    cudnn_version: Mapped[str | None] = mapped_column(String(40))
    python_version: Mapped[str] = mapped_column(String(40))
    command: Mapped[str] = mapped_column(Text)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    #: the driver process (on ``host``) and its start time in clock ticks (/proc/PID/stat
    #: field 22), so a reused pid is not taken for a live driver
    driver_pid: Mapped[int | None] = mapped_column(Integer)
    driver_started: Mapped[int | None] = mapped_column(BigInteger)
    #: the kernel's boot id (/proc/sys/kernel/random/boot_id): pids and start times only mean
    #: something within one boot of one machine, whatever the host names say
    driver_boot: Mapped[str | None] = mapped_column(String(36))
    #: refreshed by a live driver; a run on another host whose heartbeat is older than the
    #: lease is taken for dead (``store/liveness.py``)
    heartbeat_at: Mapped[datetime | None]

    jobs: Mapped[list[Job]] = relationship(back_populates="run", order_by="Job.id")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("run_id", "job_key"), Index("ix_jobs_key_status", "job_key", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    job_key: Mapped[str] = mapped_column(String(32))
    train_key: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(300))
    model_label: Mapped[str] = mapped_column(String(300))
    dataset: Mapped[str] = mapped_column(String(200))
    dataset_label: Mapped[str] = mapped_column(String(200))
    block: Mapped[str | None] = mapped_column(String(200))
    variant: Mapped[str | None] = mapped_column(String(200))
    seed: Mapped[int] = mapped_column(Integer)
    factors: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    source_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    error: Mapped[str | None] = mapped_column(Text)
    #: one of FAILURE_KINDS for failed and interrupted jobs, else NULL
    failure_kind: Mapped[str | None] = mapped_column(String(16))
    traceback: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str | None] = mapped_column(String(64))
    hardware_id: Mapped[int | None] = mapped_column(ForeignKey("hardware.id"))
    stage_seconds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    run: Mapped[Run] = relationship(back_populates="jobs")
    hardware: Mapped[Hardware | None] = relationship()
    metrics: Mapped[list[Metric]] = relationship(back_populates="job", order_by="Metric.id")
    series: Mapped[list[Series]] = relationship(order_by="Series.id")
    artifacts: Mapped[list[Artifact]] = relationship(order_by="Artifact.id")
    evidence: Mapped[ImageEvidence | None] = relationship()


class Metric(Base):
    """One number. ``samples`` keeps repeated measurements (latency) or a vector (per-class IoU)."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100), index=True)
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32))
    samples: Mapped[list[Any] | None] = mapped_column(JSON)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    job: Mapped[Job] = relationship(back_populates="metrics")


class TimingRound(Base):
    """One more round of a job's timing, measured in a fresh process after the job was recorded.

    Round 0 is the job's own measurement (``Metric.samples``); rounds 1, 2, …
    re-time the same recorded job in new worker processes, taking turns with the
    other revisions of a ``run --at`` (:mod:`segbench.regress.retime`), so the
    decisions can see how much a timing moves *between* processes, not only
    within one (:mod:`segbench.regress.rounds`). A (job, metric, round) is
    unique: rounds are added, never rewritten.

    Rounds measured in one *lockstep sweep* share its ``sweep`` id: their
    processes took turns in bursts of ``burst`` calls, so burst ``i`` of one
    revision and burst ``i`` of another ran within milliseconds of each other
    and can be compared pairwise.
    """

    __tablename__ = "timing_rounds"
    __table_args__ = (UniqueConstraint("job_id", "metric", "round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(100))
    round: Mapped[int] = mapped_column(Integer)
    #: the round's median, in the metric's unit
    value: Mapped[float] = mapped_column(Float)
    samples: Mapped[list[Any]] = mapped_column(JSON)
    #: the worker process that measured it (rounds of one job come from different processes)
    pid: Mapped[int] = mapped_column(Integer)
    measured_at: Mapped[datetime]
    #: the lockstep sweep it was measured in (None: a round measured on its own)
    sweep: Mapped[str | None] = mapped_column(String(32), default=None)
    #: calls per burst in that sweep: ``samples`` are its bursts in order
    burst: Mapped[int | None] = mapped_column(Integer, default=None)


class Series(Base):
    """A curve over training iterations (loss, learning rate), for plots."""

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    steps: Mapped[list[Any]] = mapped_column(JSON)
    values: Mapped[list[Any]] = mapped_column(JSON)


class Artifact(Base):
    """Small binary results (sample-prediction PNGs) that reports embed."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ImageEvidence(Base):
    """A job's per-image evaluation counts (:mod:`segbench.evidence`): one compressed blob per job.

    Not a row per number: VOC val's 1,449 images × 21 classes × 3 counts would be
    91k rows; the npz of int32 arrays is tens of KB. ``images_sha`` identifies the
    evaluated images (dataset, options, split, ordered ids): two jobs are paired
    only when it is equal.
    """

    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    dataset: Mapped[str] = mapped_column(String(200))
    split: Mapped[str] = mapped_column(String(100))
    images: Mapped[int] = mapped_column(Integer)
    classes: Mapped[int] = mapped_column(Integer)
    images_sha: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(16))
    #: the arrays it holds (``counts``, ``band@W``, ``fg``), so ``show`` need not decode the blob
    arrays: Mapped[list[Any]] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Claim(Base):
    """A driver's claim on one training group (a ``train_key`` at a ``code_id``) while it runs it.

    The unique constraint makes claiming an ordinary INSERT that fails for the
    second driver, on SQLite and PostgreSQL alike; the owner's heartbeat renews
    ``lease_until``, and a claim whose lease ran out (or whose driver is known
    dead) may be taken over. A group's checkpoint is only ever written by the
    driver that holds its claim.
    """

    __tablename__ = "claims"
    __table_args__ = (UniqueConstraint("code_id", "train_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code_id: Mapped[str] = mapped_column(String(64))
    train_key: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    lease_until: Mapped[datetime]
