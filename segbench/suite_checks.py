"""What a suite is checked for before any job is recorded: each error at its own line.

Everything a job would refuse at run time for its settings alone is refused here, while
:func:`segbench.suite.expand` builds the jobs: an option of the wrong type (at the line
of the option or grid value), a dataset root that is not there, a split the dataset
lacks or too small for a batch, an eval stride the model cannot switch to, a threshold
on a dataset that is not binary, a report column no job records. Torch-free: model and
dataset options resolve through the catalogs.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from segbench.config import EvalSettings, LoadedSuite, MeasureSettings, TrainSettings, VariantBlock
from segbench.data.catalog import get_dataset_entry, resolve_dataset_options
from segbench.errors import UserError, did_you_mean
from segbench.jobs import JobSpec, canonical_json
from segbench.models import get_entry, resolve_options
from segbench.plugins import is_import_path

#: Prefixes a factor key may carry; a bare key is a model option.
SECTIONS = ("train", "eval", "measure", "dataset", "model")


def split_key(key: str) -> tuple[str, str]:
    section, dot, name = key.partition(".")
    if dot and section in SECTIONS:
        return section, name
    return "model", key


#: The settings sections a factor key may address (``train.lr``); validated by pydantic.
SETTINGS = ("train", "eval", "measure")


def resolve(
    kind: str, name: str, options: dict[str, Any], where: str = "", combination: bool = True
) -> dict[str, Any]:
    """The full options of a model or a dataset (defaults filled in, every value checked).

    ``combination=False`` checks each value alone, not whether a model can be built with
    them together (that needs the whole row).
    """
    if kind == "model":
        return resolve_options(name, options, where, combination)
    return resolve_dataset_options(name, options, where)


def check_options(
    loaded: LoadedSuite, loc: tuple[Any, ...], kind: str, name: str, options: dict[str, Any]
) -> None:
    """A model's or dataset's own options, each error at the line of the option that is wrong."""
    try:
        resolve(kind, name, {})
    except UserError as exc:  # an unknown name
        raise loaded.error((*loc, "name"), str(exc)) from None
    for key, value in options.items():
        try:
            resolve(kind, name, {key: value}, combination=False)
        except UserError as exc:
            raise loaded.error((*loc, "options", key), str(exc)) from None


def check_root(loaded: LoadedSuite, index: int) -> None:
    """A dataset read from disk needs its root (the suite's, or $SEGBENCH_DATA/<name>) to exist."""
    dref = loaded.suite.datasets[index]
    entry = get_dataset_entry(dref.name)
    if entry.generated:
        return
    try:
        entry.resolve_root(dref.root)
    except UserError as exc:
        loc = ("datasets", index, "root") if dref.root is not None else ("datasets", index)
        raise loaded.error(loc, str(exc)) from None


def check_excludes(loaded: LoadedSuite, bi: int, block: VariantBlock) -> None:
    for ex_i, ex in enumerate(block.exclude):
        unknown = set(ex) - set(block.grid) - {k for v in block.named for k in v.options}
        if unknown:
            raise loaded.error(
                ("variants", bi, "exclude", ex_i),
                f"excludes on factor(s) {sorted(unknown)} that the block does not vary",
            )


def check_factor_values(loaded: LoadedSuite, bi: int, block: VariantBlock, settings: SettingsCache) -> None:
    """Every grid value and named-variant option on its own, the error at its own line."""
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
        section, name = split_key(key)
        if section in SETTINGS:
            fields = settings.base[section]
            if name not in fields:
                raise loaded.error(
                    key_loc, f"factor '{key}': {section} has no setting '{name}'" + did_you_mean(name, fields)
                )
            settings.get(bi, section, {name: value}, value_loc)
            continue
        refs = suite.models if section == "model" else suite.datasets
        for ref in refs:
            try:
                resolve(section, ref.name, {**ref.options, name: value}, combination=False)
            except UserError as exc:
                raise loaded.error(value_loc, str(exc)) from None


class SettingsCache:
    """The train / eval / measure sections with a row's overrides, validated once per distinct override."""

    def __init__(self, loaded: LoadedSuite) -> None:
        self.loaded = loaded
        self.base = {s: getattr(loaded.suite, s).model_dump(mode="json") for s in SETTINGS}
        self._done: dict[tuple[str, str], dict[str, Any]] = {}

    def get(
        self, bi: int, section: str, overrides: dict[str, Any], loc: tuple[Any, ...] | None = None
    ) -> dict[str, Any]:
        """The section's settings with ``overrides``; an error points at ``loc`` (default: the block)."""
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


def check_split_size(
    loaded: LoadedSuite, dataset: str, options: dict[str, Any], train: dict[str, Any], stages: list[str]
) -> None:
    """A training split smaller than one batch fails every training; say so at load time."""
    if "train" not in stages:
        return
    size = get_dataset_entry(dataset).split_size(train["split"], options)
    if size is not None and size < train["batch_size"]:
        raise loaded.error(
            ("train", "batch_size"),
            f"dataset '{dataset}' has {size} samples in split '{train['split']}', fewer than "
            f"train.batch_size={train['batch_size']} (batches drop the incomplete remainder)",
        )


def check_eval_stride(
    loaded: LoadedSuite,
    bi: int,
    model: str,
    options: dict[str, Any],
    evals: dict[str, Any],
    stages: list[str],
    from_grid: bool,
) -> None:
    """eval.output_stride must be one the model can switch to: else every evaluation fails."""
    stride = evals["output_stride"]
    if "eval" not in stages or stride is None or is_import_path(model):
        return
    entry = get_entry(model)
    if entry.open_options:
        return  # a plugin factory: only building it tells
    loc = ("variants", bi) if from_grid else ("eval", "output_stride")
    spec = next((o for o in entry.options if o.name == "output_stride"), None)
    if spec is None:
        raise loaded.error(
            loc, f"{stride}: model '{model}' cannot change its output stride (it has none); leave it unset"
        )
    if spec.choices is not None and stride not in spec.choices:
        raise loaded.error(
            loc, f"{stride}: model '{model}' has output strides {', '.join(map(str, spec.choices))}"
        )
    try:  # the trained model at the evaluation's stride (DeepLab's rates, FCN's skips must fit it)
        entry.resolve({**options, "output_stride": stride})
    except UserError as exc:
        raise loaded.error(loc, f"{stride}: {exc}") from None


def check_report(loaded: LoadedSuite, jobs: list[JobSpec], varied: list[str]) -> None:
    """The report section names factors the suite varies (``varied``) and metrics that its jobs record."""
    from segbench.metrics import METRICS

    report = loaded.suite.report
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


def check_splits(
    loaded: LoadedSuite, dataset: str, train: dict[str, Any], evals: dict[str, Any], stages: list[str]
) -> None:
    """A split the dataset does not have fails at load time, not in the middle of a run."""
    entry = get_dataset_entry(dataset)
    for section, settings in (("train", train), ("eval", evals)):
        if section in stages:
            try:
                entry.check_split(settings["split"])
            except UserError as exc:
                raise loaded.error((section, "split"), str(exc)) from None


def check_threshold(loaded: LoadedSuite, at: tuple[Any, ...], dataset: str, threshold: float) -> None:
    """``eval.threshold`` decides foreground vs background: a dataset with other than two classes has none."""
    classes = get_dataset_entry(dataset).num_classes
    if classes is not None and classes != 2:
        raise loaded.error(
            at,
            f"eval.threshold={threshold} is for a binary task (a one-channel sigmoid model on a "
            f"two-class dataset), but dataset '{dataset}' has {classes} classes",
        )


def location(loaded: LoadedSuite, loc: tuple[Any, ...]) -> str:
    """``file:line`` of the suite's node at ``loc``: the prefix of the catalogs' option errors."""
    line = loaded.line_of(loc)
    return f"{loaded.path}:{line}" if line else str(loaded.path)
