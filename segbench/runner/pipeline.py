"""One job, start to finish, inside a worker process.

build model → complexity → latency → train → evaluate, each stage timed. A
stage that raises ends the job as failed with its traceback; the numbers of the
stages before it are still returned, so a failed training keeps its FLOPs.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from segbench.config import EvalSettings, TrainSettings
from segbench.jobs import ArtifactValue, EvidenceValue, JobResult, JobSpec, SeriesValue
from segbench.runner.backend import JobContext

#: Callback the backend passes in: (stage, detail) for the live progress line.
Report = Callable[[str, str], None]


def run_job(spec: JobSpec, ctx: JobContext, report: Report | None = None) -> JobResult:
    """Run every stage of ``spec``; never raises for a job's own failure."""
    from segbench.engine.reproducibility import seed_everything
    from segbench.measure.hardware import hardware_identity, hardware_key

    report = report or (lambda stage, detail: None)
    result = JobResult(job_key=spec.job_key, ok=True, device=ctx.device)
    identity = hardware_identity(ctx.device, threads=spec.measure.get("threads"))
    result.hardware, result.hardware_key = identity, hardware_key(identity)
    stage = "build"
    try:
        seed_everything(spec.seed)
        with _timed(result, "build"):
            report("build", spec.label)
            model, num_classes = _build(spec)
        for stage in ("complexity", "latency", "train", "eval"):
            if stage not in spec.stages:
                continue
            report(stage, "")
            with _timed(result, stage):
                STAGES[stage](spec, ctx, model, num_classes, result, report)
    except BaseException as exc:  # noqa: BLE001 - a job's failure is data, the suite goes on
        if isinstance(exc, KeyboardInterrupt):
            raise
        result.ok = False
        result.failed_stage = stage
        result.error = f"{stage}: {type(exc).__name__}: {exc}"
        result.traceback = traceback.format_exc()
    return result


@contextmanager
def _timed(result: JobResult, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        result.stage_seconds[stage] = round(time.perf_counter() - start, 4)


def _build(spec: JobSpec) -> tuple[Any, int]:
    from segbench.data.catalog import get_dataset_entry
    from segbench.models import build_model

    entry = get_dataset_entry(spec.dataset)
    num_classes = entry.num_classes
    if num_classes is None:  # e.g. a folder dataset whose class list lives in its root
        num_classes = _eval_dataset(spec).num_classes
    model = build_model(spec.model, num_classes=num_classes, **spec.model_options)
    return model, num_classes


def _eval_dataset(spec: JobSpec) -> Any:
    from segbench.data import build_dataset

    return build_dataset(spec.dataset, spec.eval["split"], root=spec.dataset_root, **spec.dataset_options)


def _input_shape(spec: JobSpec, batch: int | None = None) -> tuple[int, int, int, int]:
    h, w = spec.measure["input_size"]
    return (batch or spec.measure["batch_size"], 3, h, w)


def _complexity(
    spec: JobSpec, ctx: JobContext, model: Any, num_classes: int, result: JobResult, report: Report
) -> None:
    from segbench.measure import count_flops, count_inference_flops, count_params
    from segbench.models import at_output_stride

    include_aux = spec.measure["include_aux"]
    params = count_params(model)
    result.add(
        "params",
        params.total if include_aux else params.total_without_aux,
        "complexity",
        extra={"by_module": params.by_module, "include_aux": include_aux},
    )
    result.add("params_total", params.total, "complexity")
    result.add("params_trainable", params.trainable, "complexity")
    result.add("params_aux", params.aux, "complexity")
    shape = _input_shape(spec, batch=1)
    ev = spec.eval
    with at_output_stride(model, ev.get("output_stride")):
        flops = count_flops(model, shape, include_aux=include_aux, num_classes=num_classes)
        extra = {
            "input_shape": list(shape),
            "convention": "fvcore: one fused multiply-add = one FLOP (conv + matmul)",
            "uncounted": flops.uncounted,
            "by_module": flops.by_module,
            "include_aux": include_aux,
        }
        result.add("macs", flops.macs, "complexity", extra=extra)
        result.add(
            "flops_total",
            flops.fvcore_total,
            "complexity",
            extra={"by_operator": flops.by_operator, "input_shape": list(shape)},
        )
        if tuple(ev["scales"]) != (1.0,) or ev["flip"]:
            total = count_inference_flops(
                model, shape, scales=ev["scales"], flip=ev["flip"], num_classes=num_classes
            )
            result.add(
                "macs_inference",
                total,
                "complexity",
                extra={"scales": ev["scales"], "flip": ev["flip"], "input_shape": list(shape)},
            )


#: the suite's ``measure`` settings that go to ``measure_latency`` as they are
#: how a model is prepared for timing; with the counts, how a latency is measured
_PREPARE_SETTINGS = ("precision", "channels_last", "compile", "threads")
_TIMING_SETTINGS = ("warmup", "iters", "min_iters", *_PREPARE_SETTINGS)


def _latency(
    spec: JobSpec, ctx: JobContext, model: Any, num_classes: int, result: JobResult, report: Report
) -> None:
    from segbench.measure import measure_latency, measure_memory
    from segbench.models import at_output_stride

    m = spec.measure
    shape = _input_shape(spec)
    timing = {key: m[key] for key in _TIMING_SETTINGS}
    with ctx.exclusive(), at_output_stride(model, spec.eval.get("output_stride")):
        stats = measure_latency(model, shape, device=ctx.device, num_classes=num_classes, **timing)
        info = stats.to_dict() | {"round": 0}
        samples = info.pop("samples_ms")
        result.add("latency_ms", stats.median_ms, "latency", samples=samples, extra=info)
        result.add("latency_p90_ms", stats.p90_ms, "latency")
        result.add("latency_cv", stats.cv, "latency")
        result.add("throughput_ips", stats.throughput_ips, "latency")
        if m["throughput_batch"]:
            tp = measure_latency(
                model,
                _input_shape(spec, m["throughput_batch"]),
                device=ctx.device,
                num_classes=num_classes,
                **timing,
            )
            result.add(
                "throughput_batch_ips",
                tp.throughput_ips,
                "latency",
                extra={"batch_size": m["throughput_batch"]},
            )
        if m["memory"]:
            mem = measure_memory(model, shape, device=ctx.device, num_classes=num_classes)
            result.add("peak_memory_bytes", mem.peak_bytes, "latency", extra=mem.to_dict())
            if mem.rss_peak_bytes is not None:  # CPU: the process's RSS growth, secondary, never judged
                result.add("peak_rss_bytes", mem.rss_peak_bytes, "latency")
            # A training step at batch 1 is undefined for BatchNorm after global pooling
            # (ASPP image pooling, PSPNet's bin 1): measure it at batch 2 at least.
            train_shape = (max(2, shape[0]), *shape[1:])
            train_mem = measure_memory(
                model, train_shape, device=ctx.device, train_step=True, num_classes=num_classes
            )
            result.add(
                "train_peak_memory_bytes",
                train_mem.peak_bytes,
                "latency",
                extra={**train_mem.to_dict(), "batch_size": train_shape[0]},
            )
            if train_mem.rss_peak_bytes is not None:
                result.add("train_peak_rss_bytes", train_mem.rss_peak_bytes, "latency")


@contextmanager
def ready_to_time(spec: JobSpec, device: str) -> Iterator[Any]:
    """``spec``'s model built afresh and prepared as its job timed it, for timing rounds (:mod:`segbench.regress.retime`).

    The model is built with the job's seed in the calling process (a fresh one
    per round), so what the round sees of allocator, caches and thread
    placement is its own; the caller holds the device and warms it up.
    Yields a :class:`~segbench.measure.latency.TimedForward`.
    """
    from segbench.engine.reproducibility import seed_everything
    from segbench.measure.latency import timed_forward
    from segbench.models import at_output_stride

    seed_everything(spec.seed)
    model, num_classes = _build(spec)
    settings = {key: spec.measure[key] for key in _PREPARE_SETTINGS}
    with (
        at_output_stride(model, spec.eval.get("output_stride")),
        timed_forward(model, _input_shape(spec), device=device, num_classes=num_classes, **settings) as timed,
    ):
        yield timed


def _train(
    spec: JobSpec, ctx: JobContext, model: Any, num_classes: int, result: JobResult, report: Report
) -> None:
    from segbench.data import build_dataset
    from segbench.data.transforms import TrainAugment
    from segbench.engine.train import train

    settings = TrainSettings.model_validate(spec.train)
    dataset = build_dataset(
        spec.dataset,
        settings.split,
        root=spec.dataset_root,
        augment=TrainAugment(
            crop_size=settings.crop_size, scale_range=settings.scale_range, hflip=settings.hflip
        ),
        **spec.dataset_options,
    )
    ckpt = ctx.checkpoint_dir / f"{spec.train_key}.pt"

    with ctx.shared() as hold, ctx.stop.deferred():

        def progress(it: int, total: int, loss: float) -> None:
            report("train", f"{it}/{total} loss {loss:.3f}")
            if hold is not None:
                hold.pause()  # a latency measurement elsewhere on this machine waits: let it run

        out = train(
            model,
            dataset,
            settings,
            device=ctx.device,
            seed=spec.seed,
            checkpoint_path=ckpt,
            num_classes=num_classes,
            on_progress=progress,
            should_stop=ctx.stop.is_set,
            checkpoint_seconds=ctx.checkpoint_seconds,
        )
    result.add("train_loss_final", out.final_loss, "train")
    result.add("train_seconds", out.seconds, "train", extra={"resumed_from": out.resumed_from})
    result.add("train_images_per_s", out.images_per_s, "train")
    result.add("train_iterations", out.iterations, "train")
    for name, curve in (("loss", out.loss_curve), ("lr", out.lr_curve)):
        if curve:
            result.series.append(SeriesValue(name, [int(s) for s, _ in curve], [float(v) for _, v in curve]))


def _eval(
    spec: JobSpec, ctx: JobContext, model: Any, num_classes: int, result: JobResult, report: Report
) -> None:
    from segbench.data.preview import sample_png
    from segbench.engine.evaluate import evaluate

    settings = EvalSettings.model_validate(spec.eval)
    dataset = _eval_dataset(spec)
    with ctx.shared():
        out = evaluate(
            model,
            dataset,
            num_classes,
            settings,
            device=ctx.device,
            ignore_index=getattr(dataset, "ignore_index", 255),
        )
    for name, value in out.metrics.items():
        result.add(name, value, "eval")
    names = list(getattr(dataset, "class_names", []) or [])
    result.add(
        "per_class_iou",
        None,
        "eval",
        samples=[None if v != v else float(v) for v in out.per_class_iou],
        extra={"classes": names},
    )
    for width, value in sorted(out.trimap.items()):
        result.add(f"trimap_miou@{width}", value, "eval", extra={"band_px": width})
    result.add("eval_images_per_s", out.images_per_s, "eval")
    palette, ignore_index = getattr(dataset, "palette", None), getattr(dataset, "ignore_index", 255)
    for i, sample in enumerate(getattr(out, "samples", None) or []):
        png = sample_png(*sample, palette, ignore_index)
        result.artifacts.append(ArtifactValue(f"sample_{i}.png", "image/png", png))
    if out.per_image:
        result.evidence = _evidence(spec, dataset, out)


def _image_ids(dataset: Any, count: int) -> list[str]:
    """The evaluated images, in order: paths under the dataset root, else indices (generated sets)."""
    pairs = getattr(dataset, "pairs", None)
    root = getattr(getattr(dataset, "layout", None), "root", None)
    if pairs is not None and root is not None:
        return [
            str(p.image.relative_to(root)) if p.image.is_relative_to(root) else p.image.name
            for p in pairs[:count]
        ]
    return [str(i) for i in range(count)]


def _evidence(spec: JobSpec, dataset: Any, out: Any) -> EvidenceValue:
    """The per-image counts, checked before they are recorded: they must give the recorded metrics."""
    from segbench.evidence import FORMAT, Evidence, image_ids_sha, source_array

    split = spec.eval["split"]
    identity = {"name": spec.dataset, "options": spec.dataset_options, "split": split}
    sha = image_ids_sha(identity, _image_ids(dataset, out.images))
    evidence = Evidence(spec.dataset, split, sha, out.per_image)
    recorded = {**out.metrics, **{f"trimap_miou@{w}": v for w, v in out.trimap.items()}}
    for name, value in recorded.items():
        if source_array(name) in out.per_image:
            again = evidence.recompute(name)
            if not (again == value or (again != again and value != value)):
                raise RuntimeError(f"per-image evidence gives {name} = {again!r}, the evaluation {value!r}")
    return EvidenceValue(
        dataset=spec.dataset,
        split=split,
        images=evidence.images,
        classes=evidence.classes,
        images_sha=sha,
        format=FORMAT,
        arrays=sorted(out.per_image),
        data=evidence.encode(),
    )


STAGES: dict[str, Callable[[JobSpec, JobContext, Any, int, JobResult, Report], None]] = {
    "complexity": _complexity,
    "latency": _latency,
    "train": _train,
    "eval": _eval,
}
