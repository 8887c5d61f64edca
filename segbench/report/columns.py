"""How each stored metric is shown: header with unit, scale, direction, format.

The database keeps SI-ish raw values (fractions, FLOPs, bytes, ms); reports
scale them the way papers print them (mIoU in %, GFLOPs, params in M).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricColumn:
    name: str
    header: str
    scale: float = 1.0
    higher_is_better: bool = True
    digits: int = 2
    #: what a reader needs to trust the number (goes into the caption once)
    note: str = ""

    def show(self, value: float) -> str:
        return f"{value * self.scale:.{self.digits}f}"


_PCT = 100.0
KNOWN: dict[str, MetricColumn] = {
    c.name: c
    for c in [
        MetricColumn("mIoU", "mIoU (%)", _PCT),
        MetricColumn("pixel_acc", "pixel acc (%)", _PCT),
        MetricColumn("mean_acc", "mean acc (%)", _PCT),
        MetricColumn("fwIoU", "f.w. IoU (%)", _PCT),
        MetricColumn("mean_f1", "F1 (%)", _PCT),
        MetricColumn(
            "context_miou",
            "context mIoU (%)",
            _PCT,
            note="context mIoU: car/boat mIoU over the vehicle pixels, which only the scene decides "
            "(docs/diagnostic.md)",
        ),
        MetricColumn("small_iou", "small-object IoU (%)", _PCT, note="small-object IoU: the lamps' IoU"),
        MetricColumn(
            "thin_iou", "thin IoU (%)", _PCT, note="thin IoU: the poles' IoU (1/32-1/12 of the image wide)"
        ),
        MetricColumn("fg_iou", "fg IoU (%)", _PCT),
        MetricColumn("fg_f1", "fg F1 (%)", _PCT),
        MetricColumn("fg_precision", "fg precision (%)", _PCT),
        MetricColumn("fg_recall", "fg recall (%)", _PCT),
        MetricColumn("val_loss", "val loss", higher_is_better=False, digits=3),
        MetricColumn("params", "params (M)", 1e-6, False, 3),
        MetricColumn("params_total", "params incl. aux (M)", 1e-6, False, 3),
        MetricColumn(
            "macs",
            "GFLOPs",
            1e-9,
            False,
            3,
            note="GFLOPs are fvcore multiply-adds (one fused multiply-add = one FLOP)",
        ),
        MetricColumn(
            "macs_inference",
            "GFLOPs (MS+flip)",
            1e-9,
            False,
            3,
            note="GFLOPs (MS+flip) sum the multiply-adds over every scale and flip of the evaluation",
        ),
        MetricColumn("flops_total", "GFLOPs (fvcore total)", 1e-9, False, 3),
        MetricColumn("latency_ms", "latency (ms)", 1.0, False, 2),
        MetricColumn("latency_p90_ms", "p90 latency (ms)", 1.0, False, 2),
        MetricColumn("throughput_ips", "throughput (img/s)", 1.0, True, 1),
        MetricColumn("throughput_batch_ips", "batch throughput (img/s)", 1.0, True, 1),
        MetricColumn("peak_memory_bytes", "peak mem (MiB)", 1 / 2**20, False, 1),
        MetricColumn("train_peak_memory_bytes", "train peak mem (MiB)", 1 / 2**20, False, 1),
        MetricColumn("train_loss_final", "train loss", 1.0, False, 3),
        MetricColumn("train_seconds", "train time (s)", 1.0, False, 1),
        MetricColumn("train_images_per_s", "train img/s", 1.0, True, 1),
    ]
}

_TRIMAP = re.compile(r"^trimap_miou@(\d+)$")


def column(name: str) -> MetricColumn:
    """Display rules for a metric; unknown metrics are shown raw, never dropped."""
    if name in KNOWN:
        return KNOWN[name]
    match = _TRIMAP.match(name)
    if match:
        return MetricColumn(name, f"trimap mIoU {match.group(1)}px (%)", _PCT)
    return MetricColumn(name, name, 1.0, True, 4)


#: What a suite's table shows when its ``report.columns`` says nothing.
DEFAULT_COLUMNS = ("mIoU", "pixel_acc", "mean_f1", "val_loss", "params", "macs", "latency_ms")
