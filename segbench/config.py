"""The suite file: pydantic models of a suite, validated with errors that name file and line.

A suite is the user's whole experiment: which datasets, which models, which
factors vary (the ablation), which stages run, and how the report is laid out.
This module only *validates*: :mod:`segbench.suite_yaml` reads the text (bounded
YAML, line index), and :mod:`segbench.suite` expands a valid suite into jobs. It
never imports torch, so ``segbench run --dry-run`` is instant.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from segbench.errors import UserError, did_you_mean
from segbench.options import literal_hint
from segbench.suite_yaml import MAX_SUITE_BYTES, compose, decode, dotted, line_of, plain_data_problem

Stage = Literal["complexity", "latency", "train", "eval"]
ALL_STAGES: tuple[str, ...] = ("complexity", "latency", "train", "eval")

#: Longest names the results database stores (the String(n) columns of
#: segbench/store/schema.py; tests/test_bad_suites.py pins that the two agree).
NAME_LENGTHS = {
    "suite_name": 200,
    "model": 300,
    "model_label": 300,
    "dataset": 200,
    "dataset_label": 200,
    "block": 200,
    "variant": 200,
}

# Strict scalar types: YAML's `true` is not the integer 1, `"8"` is not 8, `"false"` not false.
# (A float setting still takes an integer: `lr: 1` is 1.0.)
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
PosInt = Annotated[int, Strict(), Field(ge=1)]
PosFloat = Annotated[float, Strict(), Field(gt=0)]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must never silently become a default; numbers are finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TrainSettings(_Strict):
    """What the papers train with: SGD + poly LR, optional aux loss and AMP."""

    split: str = Field("train", description="the split trained on, e.g. trainaug for VOC as the papers do")
    iterations: Int = Field(200, ge=1)
    batch_size: Int = Field(8, ge=1)
    crop_size: Int | None = Field(None, ge=8, description="square crop; None = the dataset's image size")
    scale_range: tuple[PosFloat, PosFloat] = (0.5, 2.0)
    hflip: Bool = True
    lr: Float = Field(0.01, gt=0)
    momentum: Float = Field(0.9, ge=0)
    weight_decay: Float = Field(1e-4, ge=0)
    poly_power: Float = Field(0.9, ge=0)
    warmup_iters: Int = Field(0, ge=0)
    aux_weight: Float | None = Field(
        0.4, ge=0, description="weight α of the auxiliary loss; None = no aux loss"
    )
    amp: Literal["off", "fp16", "bf16"] = "off"
    channels_last: Bool = False
    deterministic: Bool = True
    checkpoint_every: Int = Field(0, ge=0, description="0 = only at the end")
    num_workers: Int = Field(0, ge=0)

    @field_validator("scale_range")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"scale_range is [low, high] with low <= high, got {list(v)}")
        return v


class SlidingWindow(_Strict):
    crop: Int = Field(..., ge=8)
    stride: Int = Field(..., ge=1)

    @model_validator(mode="after")
    def _no_gaps(self) -> SlidingWindow:
        if self.stride > self.crop:
            # Windows further apart than they are wide leave pixels without a prediction.
            raise ValueError(f"stride {self.stride} is larger than crop {self.crop}: the windows leave gaps")
        return self


class EvalSettings(_Strict):
    """Evaluation-only factors: they reuse the trained checkpoint, never retrain."""

    split: str = Field("val", description="the split evaluated on")
    scales: tuple[Float, ...] = (1.0,)
    flip: Bool = False
    output_stride: Int | None = Field(
        None, ge=1, description="evaluate at another output stride than training"
    )
    sliding_window: SlidingWindow | None = None
    trimap_widths: tuple[PosInt, ...] = ()
    batch_size: Int = Field(4, ge=1)
    max_samples: Int | None = Field(None, ge=1)
    threshold: Float | None = Field(
        None,
        gt=0,
        lt=1,
        description="foreground probability threshold of a one-channel (sigmoid) binary model; None = 0.5",
    )

    @field_validator("scales")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(s <= 0 for s in v):
            raise ValueError("scales must be a non-empty list of positive numbers")
        return v


class MeasureSettings(_Strict):
    """How complexity and latency are measured; every number says its input size."""

    input_size: tuple[PosInt, PosInt] = (512, 512)
    batch_size: Int = Field(1, ge=1)
    throughput_batch: Int | None = Field(None, ge=1, description="also measure images/s at this batch")
    warmup: Int = Field(5, ge=0)
    iters: Int = Field(50, ge=3, description="maximum timed iterations")
    min_iters: Int = Field(10, ge=3)
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    channels_last: Bool = False
    compile: Bool = False
    include_aux: Bool = Field(False, description="count the aux head in inference FLOPs")
    memory: Bool = True
    threads: Int | None = Field(None, ge=1)
    #: timing rounds, each in a fresh process (None: 5 under ``run --at``, else 1); not part of the
    #: job key: more rounds are more evidence about the same experiment, not another experiment
    rounds: Int | None = Field(None, ge=1, le=50, description="timing rounds, each in a fresh process")

    @model_validator(mode="after")
    def _min_below_max(self) -> MeasureSettings:
        if self.min_iters > self.iters:
            # The latency stage would refuse it in every job; say so before any job runs.
            raise ValueError(f"min_iters={self.min_iters} is larger than iters={self.iters}")
        return self


class DatasetRef(_Strict):
    name: str = Field(..., max_length=NAME_LENGTHS["dataset"])
    label: str | None = Field(None, max_length=NAME_LENGTHS["dataset_label"])
    root: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class ModelRef(_Strict):
    name: str = Field(
        ...,
        max_length=NAME_LENGTHS["model"],
        description="a registered model, or an import path package.module:factory",
    )
    label: str | None = Field(None, max_length=NAME_LENGTHS["model_label"])
    options: dict[str, Any] = Field(default_factory=dict)


class NamedVariant(_Strict):
    name: str = Field(..., max_length=NAME_LENGTHS["variant"])
    options: dict[str, Any] = Field(default_factory=dict)


class VariantBlock(_Strict):
    """One block of rows: a grid (cartesian product) and/or named variants.

    Factor keys address what they change: a bare key (``ppm``) is a model
    option; ``train.aux_weight``, ``eval.flip``, ``measure.precision`` and
    ``dataset.size`` address the other sections.
    """

    block: str | None = Field(None, max_length=NAME_LENGTHS["block"])
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    named: list[NamedVariant] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid factor '{key}' has no values")
        return v


class ReportSettings(_Strict):
    rows: list[str] | None = Field(None, description="factor columns, in order; default: every varied factor")
    columns: list[str] | None = Field(None, description="metric columns, in order")
    labels: dict[str, str] = Field(default_factory=dict)
    baseline: dict[str, Any] | None = Field(None, description="factor values of the Δ baseline row")
    delta: list[str] | None = Field(
        None, description="metrics compared with the baseline; default: the first"
    )
    caption: str | None = None
    resamples: Int = Field(
        10_000, ge=0, description="bootstrap resamples of the Δ intervals (0: no intervals)"
    )


class Suite(_Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", max_length=NAME_LENGTHS["suite_name"])
    description: str = ""
    datasets: list[DatasetRef] = Field(..., min_length=1)
    models: list[ModelRef] = Field(..., min_length=1)
    variants: list[VariantBlock] = Field(default_factory=lambda: [VariantBlock()])
    stages: list[Stage] = Field(default_factory=lambda: list(ALL_STAGES))
    train: TrainSettings = Field(default_factory=TrainSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    measure: MeasureSettings = Field(default_factory=MeasureSettings)
    seeds: list[Int] = Field(default_factory=lambda: [0], min_length=1)
    report: ReportSettings = Field(default_factory=ReportSettings)

    @field_validator("variants", mode="before")
    @classmethod
    def _single_block(cls, v: Any) -> Any:
        # A single mapping is the common case; a list gives the paper's row blocks.
        return [v] if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _eval_needs_train(self) -> Suite:
        if "eval" in self.stages and "train" not in self.stages:
            # Evaluating an untrained network measures nothing a user wants.
            raise ValueError("stage 'eval' needs stage 'train' (an untrained model's mIoU is noise)")
        return self


class LoadedSuite(BaseModel):
    """A validated suite plus where it came from (text and path are provenance)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    suite: Suite
    path: Path
    text: str
    lines: dict[tuple[Any, ...], int]

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """The 1-based line of the deepest YAML node on ``loc`` that exists."""
        return line_of(self.lines, loc)

    def error(self, loc: tuple[Any, ...], message: str) -> UserError:
        """A UserError that points at ``loc`` in the suite file."""
        line = self.line_of(loc)
        where = f"{self.path}:{line}" if line else str(self.path)
        return UserError(f"{where}: {dotted(loc)}: {message}")


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``X``, ``list[X]``, ``X | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _suggest(loc: tuple[Any, ...], bad_key: str) -> str:
    """Closest valid field name for an unknown key at ``loc``, among the fields of the model there."""
    model: type[BaseModel] | None = Suite
    for part in loc[:-1]:
        if model is None:
            return ""
        if isinstance(part, str):  # list indices and union tags stay on the same model
            field = model.model_fields.get(part)
            model = _nested_model(field.annotation) if field is not None else model
    return did_you_mean(bad_key, model.model_fields) if model is not None else ""


def _pydantic_message(err: Any, loc: tuple[Any, ...]) -> str:
    """pydantic's message, with a suggestion where the value is a near miss."""
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return f"unknown field '{loc[-1]}'{_suggest(loc, str(loc[-1]))}"
    kind = {"bool_type": "bool", "int_type": "int", "float_type": "float"}.get(err["type"])
    if kind is not None:
        if isinstance(err.get("input"), bool):
            return f"{msg}, got the boolean {str(err['input']).lower()}"
        return msg + literal_hint(kind, err.get("input"))
    if err["type"] == "string_too_long":
        return f"{msg} (the results database stores no more)"
    if err["type"] == "literal_error" and isinstance(err.get("input"), str):
        choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        return msg + did_you_mean(err["input"], choices)
    return msg


def parse_suite(text: str | bytes, path: Path | str = "<string>") -> LoadedSuite:
    """Validate suite YAML; raise UserError naming file, line and field."""
    path = Path(path)
    if isinstance(text, bytes):
        text = decode(text, path)
    if "\x00" in text:
        raise UserError(f"{path}: not a UTF-8 text file")
    if len(text) > MAX_SUITE_BYTES:
        raise UserError(f"{path}: {len(text):,} characters; a suite file is at most {MAX_SUITE_BYTES:,}")
    data, lines = compose(text, path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: a suite is a YAML mapping with at least 'name', 'datasets' and 'models'")
    bad = plain_data_problem(data)
    if bad is not None:
        loc, problem = bad
        line = line_of(lines, loc)
        raise UserError(f"{f'{path}:{line}' if line else path}: {dotted(loc)}: {problem}")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        messages = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            line = line_of(lines, loc)
            where = f"{path}:{line}" if line else str(path)
            messages.append(f"{where}: {dotted(loc)}: {_pydantic_message(err, loc)}")
        raise UserError("invalid suite:\n  " + "\n  ".join(messages)) from None
    return LoadedSuite(suite=suite, path=path, text=text, lines=lines)


def load_suite(path: Path | str) -> LoadedSuite:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such suite file")
    size = path.stat().st_size
    if size > MAX_SUITE_BYTES:
        raise UserError(f"{path}: {size:,} bytes; a suite file is at most {MAX_SUITE_BYTES:,} bytes")
    return parse_suite(decode(path.read_bytes(), path), path)
