"""Expansion of a validated suite into frozen, hashed JobSpecs.

A job is one (dataset × model × variant × seed) experiment; its type and keys
live in :mod:`segbench.jobs`.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from typing import Any

from segbench.config import LoadedSuite, Suite, VariantBlock
from segbench.jobs import JobSpec, canonical_json

#: Prefixes a factor key may carry; a bare key is a model option.
SECTIONS = ("train", "eval", "measure", "dataset", "model")


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


#: Jobs a suite may expand to unless ``segbench run --max-jobs`` allows more: a grid past
#: this is almost always a typo (one factor too many), and would take days to run.
DEFAULT_MAX_JOBS = 10_000

_SETTINGS = ("train", "eval", "measure")


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
        _check_options(loaded, ("models", mi), "model", mref.name, dict(mref.options))
    for di, dref in enumerate(suite.datasets):
        _check_options(loaded, ("datasets", di), "dataset", dref.name, dict(dref.options))
        _check_root(loaded, di)
    settings = _SettingsCache(loaded)
    resolved: dict[tuple[str, int, str], dict[str, Any]] = {}  # rows share most option sets

    def options_of(kind: str, index: int, ref: Any, overrides: dict[str, Any], where: str) -> dict[str, Any]:
        key = (kind, index, canonical_json(overrides))
        if key not in resolved:
            # Options that are each valid but not together: the row's line, or the entry's own
            # options when the row changes none of them.
            where = where if overrides else _where(loaded, (f"{kind}s", index, "options"))
            resolved[key] = _resolve(kind, ref.name, {**ref.options, **overrides}, where)
        return resolved[key]

    jobs: list[JobSpec] = []
    seen: set[str] = set()
    for bi, block in enumerate(suite.variants):
        _check_excludes(loaded, bi, block)
        _check_factor_values(loaded, bi, block, settings)
        where_v = _where(loaded, ("variants", bi))
        for variant, overrides in _points(block):
            by_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
            for key, value in overrides.items():
                section, name = _split_key(key)
                by_section[section][name] = value
            train, evals, measure = (settings.get(bi, s, by_section[s]) for s in _SETTINGS)
            for di, dref in enumerate(suite.datasets):
                dataset_options = options_of("dataset", di, dref, by_section["dataset"], where_v)
                _check_splits(loaded, dref.name, train, evals, suite.stages)
                _check_split_size(loaded, dref.name, dataset_options, train, suite.stages)
                for mi, mref in enumerate(suite.models):
                    model_options = options_of("model", mi, mref, by_section["model"], where_v)
                    _check_eval_stride(
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
                        key = job.job_key
                        if key in seen:
                            raise loaded.error(
                                ("variants", bi), f"job '{job.label}' appears twice: two rows are the same"
                            )
                        seen.add(key)
                        jobs.append(job)
    _check_report(loaded, jobs)
    return jobs


def _resolve(
    kind: str, name: str, options: dict[str, Any], where: str = "", combination: bool = True
) -> dict[str, Any]:
    """The full options of a model or a dataset (defaults filled in, every value checked).

    ``combination=False`` checks each value alone, not whether a model can be built with
    them together (that needs the whole row).
    """
    if kind == "model":
        from segbench.models import resolve_options

        return resolve_options(name, options, where, combination)
    from segbench.data.catalog import resolve_dataset_options

    return resolve_dataset_options(name, options, where)


def _check_options(
    loaded: LoadedSuite, loc: tuple[Any, ...], kind: str, name: str, options: dict[str, Any]
) -> None:
    """A model's or dataset's own options, each error at the line of the option that is wrong."""
    from segbench.errors import UserError

    try:
        _resolve(kind, name, {})
    except UserError as exc:  # an unknown name
        raise loaded.error((*loc, "name"), str(exc)) from None
    for key, value in options.items():
        try:
            _resolve(kind, name, {key: value}, combination=False)
        except UserError as exc:
            raise loaded.error((*loc, "options", key), str(exc)) from None


def _check_root(loaded: LoadedSuite, index: int) -> None:
    """A dataset read from disk needs its root (the suite's, or $SEGBENCH_DATA/<name>) to exist."""
    from segbench.data.catalog import get_dataset_entry
    from segbench.errors import UserError

    dref = loaded.suite.datasets[index]
    entry = get_dataset_entry(dref.name)
    if entry.generated:
        return
    try:
        entry.resolve_root(dref.root)
    except UserError as exc:
        loc = ("datasets", index, "root") if dref.root is not None else ("datasets", index)
        raise loaded.error(loc, str(exc)) from None


def _check_excludes(loaded: LoadedSuite, bi: int, block: VariantBlock) -> None:
    for ex_i, ex in enumerate(block.exclude):
        unknown = set(ex) - set(block.grid) - {k for v in block.named for k in v.options}
        if unknown:
            raise loaded.error(
                ("variants", bi, "exclude", ex_i),
                f"excludes on factor(s) {sorted(unknown)} that the block does not vary",
            )


def _check_factor_values(loaded: LoadedSuite, bi: int, block: VariantBlock, settings: _SettingsCache) -> None:
    """Every grid value and named-variant option on its own, the error at its own line."""
    from segbench.errors import UserError

    suite = loaded.suite
    values: list[tuple[tuple[Any, ...], tuple[Any, ...], str, Any]] = [
        (("variants", bi, "grid", key), ("variants", bi, "grid", key, i), key, value)
        for key, column in block.grid.items()
        for i, value in enumerate(column)
    ]
    values += [
        (
            ("variants", bi, "named", ni, "options", key),
            ("variants", bi, "named", ni, "options", key),
            key,
            value,
        )
        for ni, named in enumerate(block.named)
        for key, value in named.options.items()
    ]
    for key_loc, value_loc, key, value in values:
        section, name = _split_key(key)
        if section in _SETTINGS:
            fields = settings.base[section]
            if name not in fields:
                raise loaded.error(
                    key_loc, f"factor '{key}': {section} has no setting '{name}'" + _suggest(name, fields)
                )
            settings.get(bi, section, {name: value}, value_loc)
            continue
        refs = suite.models if section == "model" else suite.datasets
        for ref in refs:
            try:
                _resolve(section, ref.name, {**ref.options, name: value}, combination=False)
            except UserError as exc:
                raise loaded.error(value_loc, str(exc)) from None


class _SettingsCache:
    """The train / eval / measure sections with a row's overrides, validated once per distinct override."""

    def __init__(self, loaded: LoadedSuite) -> None:
        self.loaded = loaded
        self.base = {s: getattr(loaded.suite, s).model_dump(mode="json") for s in _SETTINGS}
        self._done: dict[tuple[str, str], dict[str, Any]] = {}

    def get(
        self, bi: int, section: str, overrides: dict[str, Any], loc: tuple[Any, ...] | None = None
    ) -> dict[str, Any]:
        """The section's settings with ``overrides``; an error points at ``loc`` (default: the block)."""
        from pydantic import ValidationError

        from segbench.config import EvalSettings, MeasureSettings, TrainSettings

        key = (section, canonical_json(overrides))
        if key not in self._done:
            model = {"train": TrainSettings, "eval": EvalSettings, "measure": MeasureSettings}[section]
            try:
                validated = model.model_validate({**self.base[section], **overrides})
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(str(p) for p in err["loc"])
                where = f"{section}.{field}" if field else section
                raise self.loaded.error(loc or ("variants", bi), f"{where}: {err['msg']}") from None
            self._done[key] = validated.model_dump(mode="json")
        return self._done[key]


def _check_split_size(
    loaded: LoadedSuite, dataset: str, options: dict[str, Any], train: dict[str, Any], stages: list[str]
) -> None:
    """A training split smaller than one batch fails every training; say so at load time."""
    from segbench.data.catalog import get_dataset_entry

    if "train" not in stages:
        return
    size = get_dataset_entry(dataset).split_size(train["split"], options)
    if size is not None and size < train["batch_size"]:
        raise loaded.error(
            ("train", "batch_size"),
            f"dataset '{dataset}' has {size} samples in split '{train['split']}', fewer than "
            f"train.batch_size={train['batch_size']} (batches drop the incomplete remainder)",
        )


def _check_eval_stride(
    loaded: LoadedSuite,
    bi: int,
    model: str,
    options: dict[str, Any],
    evals: dict[str, Any],
    stages: list[str],
    from_grid: bool,
) -> None:
    """eval.output_stride must be one the model can switch to: else every evaluation fails."""
    from segbench.errors import UserError
    from segbench.models import get_entry
    from segbench.models.catalog import is_import_path

    stride = evals["output_stride"]
    if "eval" not in stages or stride is None or is_import_path(model):
        return
    entry = get_entry(model)
    if entry.open_options:
        return  # a plugin factory: only building it tells
    loc = ("variants", bi) if from_grid else ("eval", "output_stride")
    try:
        spec = entry.option("output_stride")
    except KeyError:
        raise loaded.error(
            loc, f"{stride}: model '{model}' cannot change its output stride (it has none); leave it unset"
        ) from None
    if spec.choices is not None and stride not in spec.choices:
        raise loaded.error(
            loc, f"{stride}: model '{model}' has output strides {', '.join(map(str, spec.choices))}"
        )
    try:  # the trained model at the evaluation's stride (DeepLab's rates, FCN's skips must fit it)
        entry.resolve({**options, "output_stride": stride})
    except UserError as exc:
        raise loaded.error(loc, f"{stride}: {exc}") from None


def _check_report(loaded: LoadedSuite, jobs: list[JobSpec]) -> None:
    """The report section names factors the suite varies and metrics that its jobs record."""
    from segbench.errors import did_you_mean
    from segbench.metrics import METRICS

    report = loaded.suite.report
    varied = varied_factors(jobs)
    for i, row in enumerate(report.rows or []):
        if row not in varied:
            raise loaded.error(
                ("report", "rows", i),
                f"'{row}' is not a factor this suite varies{did_you_mean(row, varied)}; "
                f"varied: {', '.join(varied) or '(none)'}",
            )
    widths = sorted({w for job in jobs if "eval" in job.stages for w in job.eval["trimap_widths"]})
    # the scalars a table can show: known benchmark numbers, and the trimap widths evaluated
    metrics = [*(n for n, m in METRICS.items() if m.compared), *(f"trimap_miou@{w}" for w in widths)]
    for section in ("columns", "delta"):
        for i, name in enumerate(getattr(report, section) or []):
            if name not in metrics:
                hint = " (N must be one of eval.trimap_widths)" if name.startswith("trimap_miou@") else ""
                raise loaded.error(
                    ("report", section, i),
                    f"unknown metric '{name}'{did_you_mean(name, metrics)}{hint}; "
                    f"metrics: {', '.join(metrics)}",
                )
    if report.baseline:
        for key in report.baseline:
            if key != "variant" and key not in varied:
                raise loaded.error(
                    ("report", "baseline", key),
                    f"'{key}' is not a factor this suite varies{did_you_mean(key, [*varied, 'variant'])}; "
                    f"varied: {', '.join(varied) or '(none)'}",
                )
        if not any(_is_baseline(job, report.baseline) for job in jobs):
            raise loaded.error(("report", "baseline"), f"no job has the factor values {report.baseline}")


def _is_baseline(job: JobSpec, wanted: dict[str, Any]) -> bool:
    def norm(value: Any) -> Any:
        return list(value) if isinstance(value, list | tuple) else value

    return all(
        norm(job.variant if key == "variant" else job.factors.get(key)) == norm(value)
        for key, value in wanted.items()
    )


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
