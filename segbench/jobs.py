"""A job's types: what the suite plans, what a worker runs, what it sends back.

Plain, picklable, torch-free data that every layer shares: the suite builds
:class:`JobSpec`, the store plans them into :class:`PlannedJob`, the backends
run those and return :class:`JobResult`, and the store records it. Living
below all of them, these types let the runner and the store import each other's
data without importing each other.

Workers never touch the database. They return a :class:`JobResult`, and one
writer in the main process records it in a single transaction, so a crash or a
Ctrl-C can lose at most the job in flight and never leaves half a job behind.

A job's ``job_key`` is the hash of its canonical JSON, so the same experiment at
the same code version is recognised on a re-run and skipped. Its ``train_key``
hashes only what training depends on, so evaluation-only factors
(``eval.output_stride``, ``eval.scales``, ``eval.flip``) and measurement options
share one checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON: equal configs give equal strings, hence equal keys."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def short_hash(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


#: settings added after results were first recorded, with the default that means "as before": left out
#: of the job key at that default, so adding a setting changes no recorded job's key (cached re-runs and
#: ``segbench compare`` across commits still match)
_LATER_DEFAULTS: dict[str, Any] = {"threshold": None}


def _eval_key(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in _LATER_DEFAULTS or v != _LATER_DEFAULTS[k]}


def _fmt(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)


@dataclass(frozen=True)
class JobSpec:
    """Plain data: everything a worker needs to run one job, nothing else."""

    suite: str
    model: str
    model_label: str
    model_options: dict[str, Any]
    dataset: str
    dataset_label: str
    dataset_root: str | None
    dataset_options: dict[str, Any]
    train: dict[str, Any]
    eval: dict[str, Any]
    measure: dict[str, Any]
    stages: tuple[str, ...]
    seed: int
    factors: dict[str, Any] = field(default_factory=dict)
    block: str | None = None
    variant: str | None = None

    def _trained(self) -> dict[str, Any]:
        """What the trained weights depend on: the model and the data it is built for."""
        return {
            "model": self.model,
            "model_options": self.model_options,
            "dataset": self.dataset,
            "dataset_root": self.dataset_root,
            "dataset_options": self.dataset_options,
            "seed": self.seed,
        }

    def experiment(self) -> dict[str, Any]:
        """What defines the experiment's numbers (labels and grouping excluded)."""
        return {
            **self._trained(),
            "train": self.train if "train" in self.stages else None,
            "eval": _eval_key(self.eval) if "eval" in self.stages else None,
            # rounds say how much evidence to gather about the experiment, not which one it is
            "measure": (
                {k: v for k, v in self.measure.items() if k != "rounds"}
                if {"complexity", "latency"} & set(self.stages)
                else None
            ),
            "stages": list(self.stages),
        }

    @property
    def job_key(self) -> str:
        return short_hash(self.experiment())

    @property
    def train_key(self) -> str:
        return short_hash({**self._trained(), "train": self.train})

    @property
    def label(self) -> str:
        """Human name used by ``--only`` and progress lines."""
        parts = [self.model_label, self.dataset_label]
        if self.variant:
            parts.append(self.variant)
        parts += [f"{k}={_fmt(v)}" for k, v in self.factors.items()]
        if self.seed:
            parts.append(f"seed={self.seed}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (the job's recorded ``config``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"stages": list(self.stages)}


@dataclass(frozen=True)
class PlannedJob:
    """A job the store has recorded as pending: its row id, and what to run."""

    job_id: int
    spec: JobSpec


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

    def add(self, name: str, value: float | None, stage: str, **kw: Any) -> None:
        """Record metric ``name`` in the unit the metric table stores it in (one home for units)."""
        from segbench.metrics import unit

        self.metrics.append(
            MetricValue(name, None if value is None else float(value), unit(name), stage, **kw)
        )
