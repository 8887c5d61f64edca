"""Expansion of a validated suite into frozen, hashed JobSpecs.

A job is one (dataset × model × variant × seed) experiment. Its ``job_key`` is
the hash of its canonical JSON, so the same experiment at the same code version
is recognised on a re-run and skipped. Its ``train_key`` hashes only what
training depends on, so evaluation-only factors (``eval.output_stride``,
``eval.scales``, ``eval.flip``) and measurement options share one checkpoint.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from segbench.config import LoadedSuite, VariantBlock

#: Prefixes a factor key may carry; a bare key is a model option.
SECTIONS = ("train", "eval", "measure", "dataset", "model")


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON: equal configs give equal strings, hence equal keys."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


#: settings added after results were first recorded, with the default that means "as before": left out
#: of the job key at that default, so adding a setting changes no recorded job's key (cached re-runs and
#: ``segbench compare`` across commits still match)
_LATER_DEFAULTS: dict[str, Any] = {"threshold": None}


def _eval_key(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in _LATER_DEFAULTS or v != _LATER_DEFAULTS[k]}


def short_hash(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


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

    def experiment(self) -> dict[str, Any]:
        """What defines the experiment's numbers (labels and grouping excluded)."""
        return {
            "model": self.model,
            "model_options": self.model_options,
            "dataset": self.dataset,
            "dataset_root": self.dataset_root,
            "dataset_options": self.dataset_options,
            "train": self.train if "train" in self.stages else None,
            "eval": _eval_key(self.eval) if "eval" in self.stages else None,
            "measure": self.measure if {"complexity", "latency"} & set(self.stages) else None,
            "stages": list(self.stages),
            "seed": self.seed,
        }

    @property
    def job_key(self) -> str:
        return short_hash(self.experiment())

    @property
    def train_key(self) -> str:
        return short_hash(
            {
                "model": self.model,
                "model_options": self.model_options,
                "dataset": self.dataset,
                "dataset_root": self.dataset_root,
                "dataset_options": self.dataset_options,
                "train": self.train,
                "seed": self.seed,
            }
        )

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
        return {
            "suite": self.suite,
            "model": self.model,
            "model_label": self.model_label,
            "model_options": self.model_options,
            "dataset": self.dataset,
            "dataset_label": self.dataset_label,
            "dataset_root": self.dataset_root,
            "dataset_options": self.dataset_options,
            "train": self.train,
            "eval": self.eval,
            "measure": self.measure,
            "stages": list(self.stages),
            "seed": self.seed,
            "factors": self.factors,
            "block": self.block,
            "variant": self.variant,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        return cls(**{**d, "stages": tuple(d["stages"])})


def _fmt(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)


def _split_key(key: str) -> tuple[str, str]:
    section, dot, name = key.partition(".")
    if dot and section in SECTIONS:
        return section, name
    return "model", key


def _points(block: VariantBlock) -> list[tuple[str | None, dict[str, Any]]]:
    """(variant name, factor overrides) for every row of a block, exclusions removed."""
    keys = list(block.grid)
    grid = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*block.grid.values())]
    named: list[tuple[str | None, dict[str, Any]]] = [(v.name, dict(v.options)) for v in block.named] or [
        (None, {})
    ]
    points = [(name, {**g, **opts}) for name, opts in named for g in grid]
    return [
        (name, f)
        for name, f in points
        if not any(all(f.get(k) == v for k, v in ex.items()) for ex in block.exclude)
    ]


def expand(loaded: LoadedSuite) -> list[JobSpec]:
    """All jobs of a suite, in a stable order; option errors point at the suite's lines."""
    from segbench.data.catalog import resolve_dataset_options
    from segbench.models import resolve_options

    suite = loaded.suite
    jobs: list[JobSpec] = []
    seen: set[str] = set()
    for bi, block in enumerate(suite.variants):
        for ex_i, ex in enumerate(block.exclude):
            unknown = set(ex) - set(block.grid) - {k for v in block.named for k in v.options}
            if unknown:
                raise loaded.error(
                    ("variants", bi, "exclude", ex_i),
                    f"excludes on factor(s) {sorted(unknown)} that the block does not vary",
                )
        for variant, overrides in _points(block):
            for di, dref in enumerate(suite.datasets):
                for mi, mref in enumerate(suite.models):
                    sections: dict[str, dict[str, Any]] = {
                        "model": dict(mref.options),
                        "dataset": dict(dref.options),
                        "train": suite.train.model_dump(mode="json"),
                        "eval": suite.eval.model_dump(mode="json"),
                        "measure": suite.measure.model_dump(mode="json"),
                    }
                    for key, value in overrides.items():
                        section, name = _split_key(key)
                        if section in ("train", "eval", "measure") and name not in sections[section]:
                            raise loaded.error(
                                ("variants", bi, "grid", key)
                                if key in block.grid
                                else ("variants", bi, "named"),
                                f"factor '{key}': {section} has no setting '{name}'"
                                + _suggest(name, sections[section]),
                            )
                        sections[section][name] = value
                    # Check the suite's fixed options first, so an error points at the line
                    # that is wrong: the model/dataset entry, or the variant block.
                    resolve_options(mref.name, dict(mref.options), _where(loaded, ("models", mi)))
                    resolve_dataset_options(dref.name, dict(dref.options), _where(loaded, ("datasets", di)))
                    where_v = _where(loaded, ("variants", bi))
                    model_options = resolve_options(mref.name, sections["model"], where_v)
                    dataset_options = resolve_dataset_options(dref.name, sections["dataset"], where_v)
                    train, evals, measure = (
                        _revalidate(loaded, bi, s, sections[s]) for s in ("train", "eval", "measure")
                    )
                    _check_splits(loaded, dref.name, train, evals, suite.stages)
                    if "eval" in suite.stages and evals["threshold"] is not None:
                        at = ("variants", bi) if "eval.threshold" in overrides else ("eval", "threshold")
                        _check_threshold(loaded, at, dref.name, evals["threshold"])
                    for seed in suite.seeds:
                        job = JobSpec(
                            suite=suite.name,
                            model=mref.name,
                            model_label=mref.label or mref.name,
                            model_options=model_options,
                            dataset=dref.name,
                            dataset_label=dref.label or dref.name,
                            dataset_root=dref.root,
                            dataset_options=dataset_options,
                            train=train,
                            eval=evals,
                            measure=measure,
                            stages=tuple(suite.stages),
                            seed=seed,
                            factors=dict(overrides),
                            block=block.block,
                            variant=variant,
                        )
                        if job.job_key in seen:
                            raise loaded.error(
                                ("variants", bi), f"job '{job.label}' appears twice: two rows are the same"
                            )
                        seen.add(job.job_key)
                        jobs.append(job)
    return jobs


def _check_splits(
    loaded: LoadedSuite, dataset: str, train: dict[str, Any], evals: dict[str, Any], stages: list[str]
) -> None:
    """A split the dataset does not have fails at load time, not in the middle of a run."""
    from segbench.data.catalog import get_dataset_entry
    from segbench.errors import UserError

    entry = get_dataset_entry(dataset)
    for section, settings in (("train", train), ("eval", evals)):
        if section in stages:
            try:
                entry.check_split(settings["split"])
            except UserError as exc:
                raise loaded.error((section, "split"), str(exc)) from None


def _check_threshold(loaded: LoadedSuite, at: tuple[Any, ...], dataset: str, threshold: float) -> None:
    """``eval.threshold`` decides foreground vs background: a dataset with other than two classes has none."""
    from segbench.data.catalog import get_dataset_entry

    classes = get_dataset_entry(dataset).num_classes
    if classes is not None and classes != 2:
        raise loaded.error(
            at,
            f"eval.threshold={threshold} is for a binary task (a one-channel sigmoid model on a "
            f"two-class dataset), but dataset '{dataset}' has {classes} classes",
        )


def _suggest(name: str, choices: dict[str, Any]) -> str:
    from segbench.errors import did_you_mean

    return did_you_mean(name, choices)


def _where(loaded: LoadedSuite, loc: tuple[Any, ...]) -> str:
    line = loaded.line_of(loc)
    return f"{loaded.path}:{line}" if line else str(loaded.path)


def _revalidate(
    loaded: LoadedSuite, block_index: int, section: str, values: dict[str, Any]
) -> dict[str, Any]:
    """Re-check a settings section after variant overrides (a grid value can be invalid too)."""
    from pydantic import ValidationError

    from segbench.config import EvalSettings, MeasureSettings, TrainSettings

    model = {"train": TrainSettings, "eval": EvalSettings, "measure": MeasureSettings}[section]
    try:
        return model.model_validate(values).model_dump(mode="json")
    except ValidationError as exc:
        err = exc.errors()[0]
        field_name = ".".join(str(p) for p in err["loc"])
        raise loaded.error(("variants", block_index), f"{section}.{field_name}: {err['msg']}") from None


def select(jobs: list[JobSpec], pattern: str | None) -> list[JobSpec]:
    """Jobs whose label or key matches a glob (``--only``); substring match without wildcards."""
    if not pattern:
        return jobs
    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    return [j for j in jobs if fnmatch.fnmatch(j.label, glob) or j.job_key.startswith(pattern)]


def varied_factors(jobs: list[JobSpec]) -> list[str]:
    """Factor names in first-appearance order (report columns default to these)."""
    out: list[str] = []
    for job in jobs:
        for key in job.factors:
            if key not in out:
                out.append(key)
    return out
