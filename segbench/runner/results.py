"""What a worker sends back: plain, picklable, torch-free data.

Workers never touch the database. They return a :class:`JobResult`, and one
writer in the main process records it in a single transaction, so a crash or a
Ctrl-C can lose at most the job in flight and never leaves half a job behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MetricValue:
    name: str
    value: float | None
    unit: str
    stage: str
    samples: list[Any] | None = None
    extra: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # NaN (e.g. mIoU of an empty set) is stored as NULL: JSON and SQL both mishandle NaN.
        if self.value is not None and not math.isfinite(self.value):
            self.value = None


@dataclass
class SeriesValue:
    name: str
    steps: list[int]
    values: list[float]


@dataclass
class ArtifactValue:
    name: str
    media_type: str
    data: bytes


@dataclass
class EvidenceValue:
    """A job's per-image evaluation counts, encoded (:meth:`segbench.evidence.Evidence.encode`)."""

    dataset: str
    split: str
    images: int
    classes: int
    images_sha: str
    format: str
    arrays: list[str]
    data: bytes


@dataclass
class JobResult:
    job_key: str
    ok: bool
    metrics: list[MetricValue] = field(default_factory=list)
    series: list[SeriesValue] = field(default_factory=list)
    artifacts: list[ArtifactValue] = field(default_factory=list)
    evidence: EvidenceValue | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    device: str | None = None
    hardware: dict[str, Any] | None = None
    hardware_key: str | None = None
    error: str | None = None
    traceback: str | None = None
    failed_stage: str | None = None

    def add(self, name: str, value: float | None, unit: str, stage: str, **kw: Any) -> None:
        self.metrics.append(MetricValue(name, None if value is None else float(value), unit, stage, **kw))
