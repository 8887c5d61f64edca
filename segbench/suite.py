"""Expansion of a validated suite into frozen, hashed JobSpecs.

A job is one (dataset × model × variant × seed) experiment; its type and keys
live in :mod:`segbench.jobs`. What is checked on the way, each error at its own
line of the suite, is :mod:`segbench.suite_checks`.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from typing import Any

from segbench.config import LoadedSuite, Suite, VariantBlock
from segbench.jobs import JobSpec, canonical_json
from segbench.suite_checks import (
    SECTIONS,
    SETTINGS,
    SettingsCache,
    check_eval_stride,
    check_excludes,
    check_factor_values,
    check_options,
    check_report,
    check_root,
    check_split_size,
    check_splits,
    check_threshold,
    location,
    resolve,
    split_key,
)


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


#: Jobs a suite may expand to unless ``segbench run --max-jobs`` allows more: a grid past
#: this is almost always a typo (one factor too many), and would take days to run.
DEFAULT_MAX_JOBS = 10_000


def job_count(suite: Suite) -> int:
    """How many jobs ``suite`` expands to before exclusions, from the lengths alone."""
    rows = sum(max(len(b.named), 1) * math.prod(len(v) for v in b.grid.values()) for b in suite.variants)
    return rows * len(suite.datasets) * len(suite.models) * len(suite.seeds)


def expand(loaded: LoadedSuite, max_jobs: int | None = DEFAULT_MAX_JOBS) -> list[JobSpec]:
    """All jobs of a suite, in a stable order; every error points at the suite's lines.

    Everything a job would refuse at run time for its settings alone (an option of the
    wrong type, a file that is not there, a report column no job records) is refused
    here, before anything is recorded. The job count is checked against ``max_jobs``
    before a single job is built.
    """
    suite = loaded.suite
    count = job_count(suite)
    if max_jobs is not None and count > max_jobs:
        raise loaded.error(
            ("variants",),
            f"the suite expands to {count:,} jobs (before exclusions), more than the cap of "
            f"{max_jobs:,}; shrink the grid, or allow it with `segbench run --max-jobs {count}`",
        )
    for mi, mref in enumerate(suite.models):
        check_options(loaded, ("models", mi), "model", mref.name, dict(mref.options))
    for di, dref in enumerate(suite.datasets):
        check_options(loaded, ("datasets", di), "dataset", dref.name, dict(dref.options))
        check_root(loaded, di)
    settings = SettingsCache(loaded)
    resolved: dict[tuple[str, int, str], dict[str, Any]] = {}  # rows share most option sets

    def options_of(kind: str, index: int, ref: Any, overrides: dict[str, Any], where: str) -> dict[str, Any]:
        key = (kind, index, canonical_json(overrides))
        if key not in resolved:
            # Options that are each valid but not together: the row's line, or the entry's own
            # options when the row changes none of them.
            where = where if overrides else location(loaded, (f"{kind}s", index, "options"))
            resolved[key] = resolve(kind, ref.name, {**ref.options, **overrides}, where)
        return resolved[key]

    jobs: list[JobSpec] = []
    seen: set[str] = set()
    for bi, block in enumerate(suite.variants):
        check_excludes(loaded, bi, block)
        check_factor_values(loaded, bi, block, settings)
        where_v = location(loaded, ("variants", bi))
        for variant, overrides in _points(block):
            by_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
            for key, value in overrides.items():
                section, name = split_key(key)
                by_section[section][name] = value
            train, evals, measure = (settings.get(bi, s, by_section[s]) for s in SETTINGS)
            for di, dref in enumerate(suite.datasets):
                dataset_options = options_of("dataset", di, dref, by_section["dataset"], where_v)
                check_splits(loaded, dref.name, train, evals, suite.stages)
                check_split_size(loaded, dref.name, dataset_options, train, suite.stages)
                for mi, mref in enumerate(suite.models):
                    model_options = options_of("model", mi, mref, by_section["model"], where_v)
                    check_eval_stride(
                        loaded,
                        bi,
                        mref.name,
                        model_options,
                        evals,
                        suite.stages,
                        "eval.output_stride" in overrides,
                    )
                    if "eval" in suite.stages and evals["threshold"] is not None:
                        at = ("variants", bi) if "eval.threshold" in overrides else ("eval", "threshold")
                        check_threshold(loaded, at, dref.name, evals["threshold"])
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
                        key = job.job_key
                        if key in seen:
                            raise loaded.error(
                                ("variants", bi), f"job '{job.label}' appears twice: two rows are the same"
                            )
                        seen.add(key)
                        jobs.append(job)
    check_report(loaded, jobs, varied_factors(jobs))
    return jobs


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
