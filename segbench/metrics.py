"""Every metric's identity, in one place: what it is, how it is stored, shown and compared.

The database keeps SI-ish raw values (fractions, FLOPs, bytes, ms); the
pipeline records each with the unit named here, the reports scale it the way
papers print it (mIoU in %, GFLOPs, params in M) under its header, and
``segbench compare`` decides it by its kind and direction. Pivots, plots and
regressions all read this table, so a metric means the same thing everywhere.

Adding a metric: compute it in the pipeline (``result.add(name, value, stage)``,
which stores it in this table's unit) and give it one :class:`Metric` line below. A name this
table does not know is never dropped: it is shown raw (scale 1, four digits,
its own name as header) and compared as an ``accuracy`` where higher is
better (:func:`metric`, the stated default).

Torch-free and import-light: ``segbench list``, ``report`` and ``compare`` read it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Kind(str, Enum):
    """How a regression check treats a metric (``segbench.regress.rules`` holds the decisions)."""

    #: hardware-independent single measurements (mIoU, losses, anything unknown)
    accuracy = "accuracy"
    #: speeds and times: compared only on the same hardware, with their samples
    timing = "timing"
    #: peak bytes: compared only on the same hardware, one deterministic number
    memory = "memory"
    #: exact properties of the code (parameters, FLOPs): any difference counts
    complexity = "complexity"


@dataclass(frozen=True)
class Metric:
    """One metric: stored name and unit, report header and scale, direction and regression kind."""

    name: str
    #: the unit of the stored (raw) value
    unit: str
    #: the report's column header, with the display unit
    header: str
    #: stored value × scale = the value a report prints
    scale: float = 1.0
    digits: int = 2
    higher_is_better: bool = True
    kind: Kind = Kind.accuracy
    #: short names users type in ``--metric``, ``--threshold`` and ``--fail-on``
    aliases: tuple[str, ...] = ()
    #: what a reader needs to trust the number (goes into a table's caption once)
    note: str = ""
    #: for timings: the metric whose recorded samples decide significance (None: its own, if any)
    samples_from: str | None = None
    #: a benchmark number ``compare`` checks by default; False for a dispersion statistic,
    #: a vector, a configuration echo
    compared: bool = True

    @property
    def percent(self) -> bool:
        """Stored as a fraction, printed in per cent (a change is in points)."""
        return self.scale == _PCT

    def show(self, value: float) -> str:
        """The value as every report prints it: scaled, at the metric's digits."""
        return f"{value * self.scale:.{self.digits}f}"

    def show_signed(self, value: float, minus: str = "-") -> str:
        """A difference, always signed (``+1.10``); ``minus="−"`` for a true minus, as intervals print."""
        return f"{value * self.scale:+.{self.digits}f}".replace("-", minus)

    def show_mean(self, mean: float, std: float | None) -> str:
        """``mean ± std``; a spread that prints as zero (params, FLOPs across seeds) says nothing and is left out."""
        if std is None or float(self.show(std)) == 0:
            return self.show(mean)
        return f"{self.show(mean)} ± {self.show(std)}"


_PCT = 100.0
_MIB = 1 / 2**20
_ACC = "fraction"


def _timing(name: str, unit: str, header: str, digits: int, higher: bool, **kw: Any) -> Metric:
    return Metric(name, unit, header, 1.0, digits, higher, Kind.timing, **kw)


def _count(name: str, unit: str, header: str, scale: float, **kw: Any) -> Metric:
    """Parameters and FLOPs: exact counts, three digits in millions or billions, fewer is better."""
    return Metric(name, unit, header, scale, 3, False, Kind.complexity, **kw)


#: The known metrics, in the order reports and comparisons list them.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("mIoU", _ACC, "mIoU (%)", _PCT),
        Metric("pixel_acc", _ACC, "pixel acc (%)", _PCT),
        Metric("mean_acc", _ACC, "mean acc (%)", _PCT),
        Metric("fwIoU", _ACC, "f.w. IoU (%)", _PCT),
        Metric("mean_f1", _ACC, "F1 (%)", _PCT),
        Metric("fg_iou", _ACC, "fg IoU (%)", _PCT),
        Metric("fg_f1", _ACC, "fg F1 (%)", _PCT),
        Metric("fg_precision", _ACC, "fg precision (%)", _PCT),
        Metric("fg_recall", _ACC, "fg recall (%)", _PCT),
        # the diagnostic dataset's positive controls (docs/diagnostic.md)
        Metric(
            "context_miou",
            _ACC,
            "context mIoU (%)",
            _PCT,
            note="context mIoU: car/boat mIoU over the vehicle pixels, which only the scene decides "
            "(docs/diagnostic.md)",
        ),
        Metric("small_iou", _ACC, "small-object IoU (%)", _PCT, note="small-object IoU: the lamps' IoU"),
        Metric(
            "thin_iou",
            _ACC,
            "thin IoU (%)",
            _PCT,
            note="thin IoU: the poles' IoU (1/32-1/12 of the image wide)",
        ),
        Metric("val_loss", "loss", "val loss", digits=3, higher_is_better=False),
        _count("params", "count", "params (M)", 1e-6),
        _count("params_total", "count", "params incl. aux (M)", 1e-6),
        _count("params_trainable", "count", "trainable params (M)", 1e-6),
        _count("params_aux", "count", "aux params (M)", 1e-6),
        _count(
            "macs",
            "FLOP",
            "GFLOPs",
            1e-9,
            aliases=("flops", "gflops"),
            note="GFLOPs are fvcore multiply-adds (one fused multiply-add = one FLOP)",
        ),
        _count(
            "macs_inference",
            "FLOP",
            "GFLOPs (MS+flip)",
            1e-9,
            note="GFLOPs (MS+flip) sum the multiply-adds over every scale and flip of the evaluation",
        ),
        _count("flops_total", "FLOP", "GFLOPs (fvcore total)", 1e-9),
        _timing(
            "latency_ms", "ms", "latency (ms)", 2, False, aliases=("latency",), samples_from="latency_ms"
        ),
        # a tail statistic that one slow iteration moves: its own samples are not recorded
        _timing("latency_p90_ms", "ms", "p90 latency (ms)", 2, False, aliases=("p90",)),
        _timing("latency_cv", "ratio", "latency CV", 3, False, compared=False),
        # images over the median latency: the latency samples decide its significance
        _timing(
            "throughput_ips",
            "img/s",
            "throughput (img/s)",
            1,
            True,
            aliases=("throughput",),
            samples_from="latency_ms",
        ),
        _timing("throughput_batch_ips", "img/s", "batch throughput (img/s)", 1, True),
        Metric(
            "peak_memory_bytes",
            "B",
            "peak mem (MiB)",
            _MIB,
            1,
            False,
            Kind.memory,
            aliases=("memory",),
        ),
        Metric("train_peak_memory_bytes", "B", "train peak mem (MiB)", _MIB, 1, False, Kind.memory),
        # the process's resident-set growth on CPU: kept for context, never judged (it moves
        # with allocator state, not with the model; the tensor peak above is the verdict's)
        Metric("peak_rss_bytes", "B", "peak RSS (MiB)", _MIB, 1, False, Kind.memory, compared=False),
        Metric(
            "train_peak_rss_bytes", "B", "train peak RSS (MiB)", _MIB, 1, False, Kind.memory, compared=False
        ),
        Metric("train_loss_final", "loss", "train loss", digits=3, higher_is_better=False),
        _timing("train_seconds", "s", "train time (s)", 1, False),
        _timing("train_images_per_s", "img/s", "train img/s", 1, True),
        Metric("train_iterations", "count", "train iterations", digits=0, compared=False),
        _timing("eval_images_per_s", "img/s", "eval img/s", 1, True),
        # a vector (one IoU per class, in the samples), not a scalar
        Metric("per_class_iou", _ACC, "per-class IoU (%)", _PCT, compared=False),
    ]
}

#: Metrics named by a pattern: (regex, stored unit, header with the match's groups).
_PATTERNS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    # mIoU within a band of N px around object boundaries (DeepLab v3+ Fig. 5)
    (re.compile(r"^trimap_miou@(\d+)$"), _ACC, "trimap mIoU {0}px (%)"),
)
TRIMAP = _PATTERNS[0][0]

ALIASES: dict[str, str] = {alias: m.name for m in METRICS.values() for alias in m.aliases}

#: What a suite's table shows when its ``report.columns`` says nothing.
DEFAULT_COLUMNS = ("mIoU", "pixel_acc", "mean_f1", "val_loss", "params", "macs", "latency_ms")


def metric(name: str) -> Metric:
    """The metric called ``name``: known, matched by a pattern, or unknown, shown raw (never dropped)."""
    if name in METRICS:
        return METRICS[name]
    for pattern, unit_name, header in _PATTERNS:
        match = pattern.match(name)
        if match:
            return Metric(name, unit_name, header.format(*match.groups()), _PCT)
    return Metric(name, "", name, 1.0, 4)


def is_known(name: str) -> bool:
    """Named by the table or one of its patterns (an unknown metric still shows, raw)."""
    return name in METRICS or any(p.match(name) for p, _, _ in _PATTERNS)


def unit(name: str) -> str:
    """The unit a metric is stored in (the pipeline records it with this)."""
    return metric(name).unit


def canonical(name: str, available: Collection[str]) -> str | None:
    """The stored name ``name`` means, or None: exact, an alias (``latency``), or one case-insensitive match.

    ``available`` are the names recorded where the user asks (a run, two
    revisions); known metrics count too, so an alias resolves the same way in
    ``compare`` and in ``report --pivot``.
    """
    known = set(available) | set(METRICS)
    if name in known:
        return name
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    folded = [k for k in known if k.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def order(names: Collection[str]) -> list[str]:
    """Known metrics in the table's order, then the rest alphabetically."""
    known = list(METRICS)
    return sorted(set(names), key=lambda n: (known.index(n) if n in known else len(known), n))
