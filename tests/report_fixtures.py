"""A small but realistic results database for the report tests, built through the ORM.

It holds what ``segbench run`` records for a two-block ablation of the tiny test
model on the diagnostic dataset (DeepLab v3+ Table 3 in miniature): a
``channels`` block varying the width, and a ``test-time augmentation`` block
adding flip and multi-scale evaluation; two seeds per row; one job that failed
while training. Every number is fixed, so reports rendered from it are
byte-for-byte reproducible (golden files), and every kind of record a report
reads is there: metrics with units and latency samples, per-class IoU with class
names, trimap mIoU at two band widths, loss/lr curves, a sample-prediction PNG, and
per-image evidence (:func:`evidence_for`) that recomputes each job's recorded mIoU
and pixel accuracy exactly, so the Δ mIoU column carries bootstrap intervals.

:func:`add_cached_rerun` records a second run whose jobs all point at the
first run's (``cached``), as a re-run at the same commit does, so tests can
check that reports follow those links to the curves and images.
"""

from __future__ import annotations

import hashlib
import io
import math
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segbench.data.classes import DIAGNOSTIC_CLASSES, DIAGNOSTIC_PALETTE
from segbench.evidence import FORMAT, Evidence
from segbench.store.db import Database, open_db
from segbench.store.schema import Artifact, ImageEvidence, Job, Metric, Run, Series

SUITE_NAME = "tta_ablation"
COMMIT = "3f2a9c1d0b7e6a5f4c3b2a1908f7e6d5c4b3a291"

SUITE_TEXT = """\
# Test-time augmentation on top of a wider network, as DeepLab v3+ Table 3 groups it.
name: tta_ablation
description: Width, then flip and multi-scale evaluation, for the tiny test network.
datasets:
  - name: diagnostic
    options: {size: 64, train_length: 64, val_length: 8}
models:
  - name: "tests.tinymodels:tiny_segnet"
    label: tiny
variants:
  - block: channels
    grid:
      width: [16, 32]
  - block: test-time augmentation
    grid:
      width: [32]
      eval.flip: [true]
      eval.scales: [[1.0], [0.75, 1.0, 1.25]]
stages: [complexity, latency, train, eval]
train: {iterations: 50, batch_size: 4, aux_weight: null}
eval: {batch_size: 4, trimap_widths: [2, 8]}
measure: {input_size: [64, 64], warmup: 1, iters: 5, min_iters: 3, memory: false}
seeds: [0, 1]
report:
  columns: [mIoU, pixel_acc, trimap_miou@2, params, macs, latency_ms]
  delta: [mIoU, latency_ms]
  labels: {width: channels, eval.flip: Flip, eval.scales: MS scales}
  baseline: {width: 16}
  caption: "Tiny network on the diagnostic dataset (64×64): width & test-time augmentation."
"""

#: (block, factors, per-seed numbers) of every row, in the suite's order.
ROWS: list[tuple[str, dict[str, Any], list[dict[str, float]]]] = [
    (
        "channels",
        {"width": 16},
        [
            {"mIoU": 0.6012, "pixel_acc": 0.8731, "trimap@2": 0.3310, "trimap@8": 0.4890, "latency_ms": 1.92},
            {"mIoU": 0.5894, "pixel_acc": 0.8702, "trimap@2": 0.3195, "trimap@8": 0.4811, "latency_ms": 1.97},
        ],
    ),
    (
        "channels",
        {"width": 32},
        [
            {"mIoU": 0.6455, "pixel_acc": 0.8890, "trimap@2": 0.3702, "trimap@8": 0.5322, "latency_ms": 3.41},
            {"mIoU": 0.6519, "pixel_acc": 0.8917, "trimap@2": 0.3788, "trimap@8": 0.5390, "latency_ms": 3.38},
        ],
    ),
    (
        "test-time augmentation",
        {"width": 32, "eval.flip": True, "eval.scales": [1.0]},
        [
            {"mIoU": 0.6598, "pixel_acc": 0.8944, "trimap@2": 0.3861, "trimap@8": 0.5447, "latency_ms": 6.85},
            {"mIoU": 0.6630, "pixel_acc": 0.8961, "trimap@2": 0.3907, "trimap@8": 0.5481, "latency_ms": 6.90},
        ],
    ),
    (
        "test-time augmentation",
        {"width": 32, "eval.flip": True, "eval.scales": [0.75, 1.0, 1.25]},
        [
            {
                "mIoU": 0.6741,
                "pixel_acc": 0.9012,
                "trimap@2": 0.4033,
                "trimap@8": 0.5602,
                "latency_ms": 20.47,
            },
            # seed 1 failed while training: complexity and latency were measured before it did
            {"latency_ms": 20.61},
        ],
    ),
]
FAILED_ERROR = "RuntimeError: deliberate failure while training"
#: params and multiply-adds depend on the width only
COMPLEXITY = {16: (0.5903e6, 1.2417e9), 32: (2.3189e6, 4.8741e9)}


def _key(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _label(factors: dict[str, Any], seed: int) -> str:
    """The label ``segbench.suite.JobSpec.label`` gives such a job."""
    shown = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in factors.items()]
    return " ".join(["tiny", "diagnostic", *shown, *([f"seed={seed}"] if seed else [])])


def sample_png(row: int, seed: int, index: int, size: int = 16) -> bytes:
    """image | ground truth | prediction, side by side, as the pipeline stores them.

    Image ``index`` shows a car at its own place; the prediction misses a strip of it
    that narrows with better rows.
    """
    panel = Image.new("RGB", (size, size), (70, 90, 110))
    gt = Image.new("RGB", (size, size), DIAGNOSTIC_PALETTE[index % 2])
    pred = Image.new("RGB", (size, size), DIAGNOSTIC_PALETTE[index % 2])
    left = 2 + 3 * index
    for y in range(size // 2, size):
        for x in range(left, left + size // 2):
            panel.putpixel((x, y), (200, 40, 60))
            gt.putpixel((x, y), DIAGNOSTIC_PALETTE[2])
            if x < left + size // 2 - (4 - row) - seed:
                pred.putpixel((x, y), DIAGNOSTIC_PALETTE[2])
    out = Image.new("RGB", (3 * size, size))
    for i, part in enumerate((panel, gt, pred)):
        out.paste(part, (i * size, 0))
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def _metrics(job_id: int, width: int, numbers: dict[str, float], row: int, seed: int) -> list[Metric]:
    params, macs = COMPLEXITY[width]
    latency = numbers["latency_ms"]
    out = [
        Metric(job_id=job_id, stage="complexity", name="params", value=params, unit="count"),
        Metric(job_id=job_id, stage="complexity", name="macs", value=macs, unit="FLOP"),
        Metric(
            job_id=job_id,
            stage="latency",
            name="latency_ms",
            value=latency,
            unit="ms",
            samples=[round(latency + d, 3) for d in (0.04, -0.02, 0.0, 0.11, -0.03)],
            extra={"warmup": 1, "iters": 5},
        ),
    ]
    if "mIoU" not in numbers:
        return out
    miou = numbers["mIoU"]
    # A per-class spread around the mIoU; "lamp" never occurs in these val images (NaN → None).
    spread = [0.28, 0.12, 0.05, -0.04, 0.09, -0.21, None]
    per_class = [
        None if s is None else round(min(1.0, miou + s + 0.004 * row - 0.003 * seed), 4) for s in spread
    ]
    out += [
        Metric(job_id=job_id, stage="eval", name="mIoU", value=miou, unit="fraction"),
        Metric(job_id=job_id, stage="eval", name="pixel_acc", value=numbers["pixel_acc"], unit="fraction"),
        Metric(
            job_id=job_id,
            stage="eval",
            name="per_class_iou",
            value=None,
            unit="fraction",
            samples=per_class,
            extra={"classes": list(DIAGNOSTIC_CLASSES)},
        ),
        Metric(
            job_id=job_id,
            stage="eval",
            name="trimap_miou@2",
            value=numbers["trimap@2"],
            unit="fraction",
            extra={"band_px": 2},
        ),
        Metric(
            job_id=job_id,
            stage="eval",
            name="trimap_miou@8",
            value=numbers["trimap@8"],
            unit="fraction",
            extra={"band_px": 8},
        ),
        Metric(job_id=job_id, stage="train", name="train_loss_final", value=0.3 + 0.1 * seed, unit="loss"),
    ]
    return out


#: the evaluation set every fixture job was evaluated on (8 diagnostic val images)
IMAGES, IMAGES_SHA = 8, hashlib.sha256(b"tta_ablation val 0-7").hexdigest()


def evidence_for(job_id: int, miou: float, pixel_acc: float, row: int, seed: int) -> ImageEvidence:
    """Per-image counts, split at random over :data:`IMAGES` images, that give ``miou`` and ``pixel_acc``.

    One class holds every labelled pixel, with integer totals tp / gt / union in
    the exact ratios of the recorded numbers (written with four digits, so
    ``tp / union`` and ``tp / gt`` round to the very same floats); a multinomial
    split per job spreads them over the images, so rows differ image by image.
    """
    iou, acc = Fraction(str(miou)), Fraction(str(pixel_acc))
    tp = math.lcm(iou.numerator, acc.numerator)
    gt, union = int(tp / acc), int(tp / iou)
    pred = union - gt + tp
    rng = np.random.default_rng(1000 * row + seed)
    weights = rng.dirichlet(np.full(IMAGES, 4.0))
    split = [rng.multinomial(total, weights) for total in (tp, gt - tp, pred - tp)]
    counts = np.zeros((IMAGES, 3, len(DIAGNOSTIC_CLASSES)), np.int64)
    counts[:, 0, 0] = split[0]
    counts[:, 1, 0] = split[0] + split[1]
    counts[:, 2, 0] = split[0] + split[2]
    evidence = Evidence("diagnostic", "val", IMAGES_SHA, {"counts": counts})
    assert evidence.recompute("mIoU") == miou and evidence.recompute("pixel_acc") == pixel_acc
    return ImageEvidence(
        job_id=job_id,
        dataset="diagnostic",
        split="val",
        images=IMAGES,
        classes=len(DIAGNOSTIC_CLASSES),
        images_sha=IMAGES_SHA,
        format=FORMAT,
        arrays=["counts"],
        data=evidence.encode(),
    )


def _curves(job_id: int, width: int, seed: int) -> list[Series]:
    steps = list(range(0, 50, 5))
    rate = 0.045 if width == 16 else 0.06
    loss = [round(1.95 * math.exp(-rate * s) + 0.25 + 0.02 * ((s // 5 + seed) % 3), 4) for s in steps]
    lr = [round(0.01 * (1 - s / 50) ** 0.9, 6) for s in steps]
    return [
        Series(job_id=job_id, name="loss", steps=steps, values=loss),
        Series(job_id=job_id, name="lr", steps=steps, values=lr),
    ]


def _run(suite_text: str, started: datetime) -> Run:
    return Run(
        uid=_key("run", started.isoformat()),
        suite_name=SUITE_NAME,
        suite_path=f"suites/{SUITE_NAME}.yaml",
        suite_text=suite_text,
        suite_sha=hashlib.sha256(suite_text.encode()).hexdigest(),
        suite_commit=COMMIT,
        suite_branch="main",
        suite_dirty=False,
        segbench_commit=COMMIT,
        segbench_branch="main",
        segbench_dirty=False,
        code_id=_key("code", COMMIT),
        host="ci-runner",
        segbench_version="0.1.0",
        torch_version="2.14.1",
        cuda_version=None,
        cudnn_version=None,
        python_version="3.11.2",
        command=f"segbench run suites/{SUITE_NAME}.yaml",
        environment={},
        started_at=started,
        finished_at=started,
        status="done",
    )


def build_report_db(path: Path, suite_text: str = SUITE_TEXT) -> Database:
    """Write the database to ``path`` (a new SQLite file) and return it opened."""
    db = open_db(f"sqlite:///{path}")
    with db.session() as s:
        run = _run(suite_text, datetime(2025, 3, 14, 9, 26, 53))
        s.add(run)
        s.flush()
        position = 0
        for row, (block, factors, seeds) in enumerate(ROWS):
            for seed, numbers in enumerate(seeds):
                ok = "mIoU" in numbers
                key = _key(block, factors, seed)
                job = Job(
                    run_id=run.id,
                    job_key=key,
                    train_key=_key(factors["width"], seed),
                    position=position,
                    label=_label(factors, seed),
                    model="tests.tinymodels:tiny_segnet",
                    model_label="tiny",
                    dataset="diagnostic",
                    dataset_label="diagnostic",
                    block=block,
                    variant=None,
                    seed=seed,
                    factors=factors,
                    config={"model_options": {"width": factors["width"]}, "seed": seed},
                    status="done" if ok else "failed",
                    error=None if ok else FAILED_ERROR,
                    device="cpu",
                    stage_seconds={"complexity": 0.4, "latency": 0.2, "train": 3.1, "eval": 0.5},
                )
                s.add(job)
                s.flush()
                position += 1
                s.add_all(_metrics(job.id, factors["width"], numbers, row, seed))
                if ok:
                    s.add(evidence_for(job.id, numbers["mIoU"], numbers["pixel_acc"], row, seed))
                    s.add_all(_curves(job.id, factors["width"], seed))
                    s.add_all(
                        Artifact(
                            job_id=job.id,
                            name=f"sample_{i}.png",
                            media_type="image/png",
                            data=sample_png(row, seed, i),
                        )
                        for i in range(2)
                    )
    return db


def add_cached_rerun(db: Database) -> int:
    """A second run of the same suite at the same commit: every job ``cached`` on run 1's."""
    with db.session() as s:
        first = s.get(Run, 1)
        assert first is not None
        run = _run(first.suite_text, datetime(2025, 3, 15, 8, 0, 0))
        s.add(run)
        s.flush()
        for job in list(first.jobs):
            s.add(
                Job(
                    run_id=run.id,
                    job_key=job.job_key,
                    train_key=job.train_key,
                    position=job.position,
                    label=job.label,
                    model=job.model,
                    model_label=job.model_label,
                    dataset=job.dataset,
                    dataset_label=job.dataset_label,
                    block=job.block,
                    variant=job.variant,
                    seed=job.seed,
                    factors=job.factors,
                    config=job.config,
                    status="cached",
                    source_job_id=job.id,
                    stage_seconds={},
                )
            )
        return run.id
