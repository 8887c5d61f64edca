"""The suite file: pydantic models and a YAML loader whose errors name file and line.

A suite is the user's whole experiment: which datasets, which models, which
factors vary (the ablation), which stages run, and how the report is laid out.
This module only *validates*; :mod:`segbench.suite` expands a valid suite into
jobs. It never imports torch, so ``segbench run --dry-run`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segbench.errors import UserError, did_you_mean

Stage = Literal["complexity", "latency", "train", "eval"]
ALL_STAGES: tuple[str, ...] = ("complexity", "latency", "train", "eval")


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must never silently become a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainSettings(_Strict):
    """What the papers train with: SGD + poly LR, optional aux loss and AMP."""

    split: str = Field("train", description="the split trained on, e.g. trainaug for VOC as the papers do")
    iterations: int = Field(200, ge=1)
    batch_size: int = Field(8, ge=1)
    crop_size: int | None = Field(None, ge=8, description="square crop; None = the dataset's image size")
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    lr: float = Field(0.01, gt=0)
    momentum: float = 0.9
    weight_decay: float = Field(1e-4, ge=0)
    poly_power: float = 0.9
    warmup_iters: int = Field(0, ge=0)
    aux_weight: float | None = Field(
        0.4, ge=0, description="weight α of the auxiliary loss; None = no aux loss"
    )
    amp: Literal["off", "fp16", "bf16"] = "off"
    channels_last: bool = False
    deterministic: bool = True
    checkpoint_every: int = Field(0, ge=0, description="0 = only at the end")
    num_workers: int = Field(0, ge=0)


class SlidingWindow(_Strict):
    crop: int = Field(..., ge=8)
    stride: int = Field(..., ge=1)


class EvalSettings(_Strict):
    """Evaluation-only factors: they reuse the trained checkpoint, never retrain."""

    split: str = Field("val", description="the split evaluated on")
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    output_stride: int | None = Field(None, description="evaluate at another output stride than training")
    sliding_window: SlidingWindow | None = None
    trimap_widths: tuple[int, ...] = ()
    batch_size: int = Field(4, ge=1)
    max_samples: int | None = Field(None, ge=1)
    threshold: float | None = Field(
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

    input_size: tuple[int, int] = (512, 512)
    batch_size: int = Field(1, ge=1)
    throughput_batch: int | None = Field(None, ge=1, description="also measure images/s at this batch")
    warmup: int = Field(5, ge=0)
    iters: int = Field(50, ge=3, description="maximum timed iterations")
    min_iters: int = Field(10, ge=3)
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    include_aux: bool = Field(False, description="count the aux head in inference FLOPs")
    memory: bool = True
    threads: int | None = Field(None, ge=1)


class DatasetRef(_Strict):
    name: str
    label: str | None = None
    root: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class ModelRef(_Strict):
    name: str = Field(..., description="a registered model, or an import path package.module:factory")
    label: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class NamedVariant(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class VariantBlock(_Strict):
    """One block of rows: a grid (cartesian product) and/or named variants.

    Factor keys address what they change: a bare key (``ppm``) is a model
    option; ``train.aux_weight``, ``eval.flip``, ``measure.precision`` and
    ``dataset.size`` address the other sections.
    """

    block: str | None = None
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


class Suite(_Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    datasets: list[DatasetRef] = Field(..., min_length=1)
    models: list[ModelRef] = Field(..., min_length=1)
    variants: list[VariantBlock] = Field(default_factory=lambda: [VariantBlock()])
    stages: list[Stage] = Field(default_factory=lambda: list(ALL_STAGES))
    train: TrainSettings = Field(default_factory=TrainSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    measure: MeasureSettings = Field(default_factory=MeasureSettings)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
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
        if len(loc) > 1 and loc[0] == "variants" and ("variants", 0) not in self.lines:
            loc = ("variants", *loc[2:])  # a single block written as a mapping, not a list
        return _line_of(self.lines, loc)

    def error(self, loc: tuple[Any, ...], message: str) -> UserError:
        """A UserError that points at ``loc`` in the suite file."""
        line = self.line_of(loc)
        where = f"{self.path}:{line}" if line else str(self.path)
        return UserError(f"{where}: {_dotted(loc)}: {message}")


def _line_index(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _line_index(value_node, (*path, key), out)
            out[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out)


def _line_of(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<suite>"


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


def parse_suite(text: str, path: Path | str = "<string>") -> LoadedSuite:
    """Validate suite YAML; raise UserError naming file, line and field."""
    path = Path(path)
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a suite is a YAML mapping with at least 'name', 'datasets' and 'models'")
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        messages = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if p not in ("function-after[_eval_needs_train(), Suite]",))
            line = _line_of(lines, loc)
            where = f"{path}:{line}" if line else str(path)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown field '{loc[-1]}'{_suggest(loc, str(loc[-1]))}"
            messages.append(f"{where}: {_dotted(loc)}: {msg}")
        raise UserError("invalid suite:\n  " + "\n  ".join(messages)) from None
    return LoadedSuite(suite=suite, path=path, text=text, lines=lines)


def load_suite(path: Path | str) -> LoadedSuite:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such suite file")
    return parse_suite(path.read_text(encoding="utf-8"), path)
