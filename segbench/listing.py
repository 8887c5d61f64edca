"""Tables for ``segbench list`` and ``segbench show`` (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

if TYPE_CHECKING:
    from segbench.jobs import EvidenceValue
    from segbench.store.reads import JobRecord, MetricRecord, RunRecord


def _fmt_default(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def models_table() -> Table:
    from segbench.models.catalog import entries

    table = Table(title="models (build_model(name, num_classes, **options))", show_lines=True)
    table.add_column("name", style="bold")
    table.add_column("what")
    table.add_column("options (default)")
    for entry in entries():
        opts = "\n".join(
            f"{o.name}={_fmt_default(o.default)}"
            + (f"  ∈ {{{', '.join(map(str, o.choices))}}}" if o.choices else "")
            for o in entry.options
        )
        what = entry.summary + (f"\n[dim]{entry.paper}[/]" if entry.paper else "")
        what += f"\n[dim]{entry.params_note}[/]" if entry.params_note else ""
        table.add_row(entry.name, what, opts or "(factory's own keyword arguments)")
    table.caption = "Your own model: name it as package.module:factory in a suite, or publish a 'segbench.models' entry point."
    return table


def datasets_table() -> Table:
    from segbench.data.catalog import dataset_entries

    table = Table(title="datasets", show_lines=True)
    for col in ("name", "classes", "what", "expects files at"):
        table.add_column(col)
    for entry in dataset_entries():
        table.add_row(
            entry.name,
            str(entry.num_classes) if entry.num_classes is not None else "from root",
            entry.summary,
            entry.where(),
        )
    return table


def suites_table(directory: Path) -> Table:
    from segbench.config import load_suite
    from segbench.errors import UserError

    table = Table(title=f"suites in {directory}/")
    for col in ("file", "name", "description"):
        table.add_column(col)
    for path in sorted(directory.glob("*.y*ml")):
        try:
            suite = load_suite(path).suite
            table.add_row(
                path.name, suite.name, suite.description.strip().splitlines()[0] if suite.description else ""
            )
        except UserError as exc:
            table.add_row(path.name, "[red]invalid[/]", str(exc).splitlines()[-1])
    return table


def runs_table(db_url: str | None) -> Table:
    from segbench.store import reads
    from segbench.store.db import open_db

    db = open_db(db_url, create=False)
    table = Table(title=f"runs in {db.display_url}")
    for col in ("run", "suite", "status", "started", "jobs", "done", "failed", "commit", "host"):
        table.add_column(col)
    with db.sessions() as s:
        counts = reads.job_counts(s)
        runs = reads.runs(s)
    for run in runs:
        c = counts.get(run.id, {})
        commit = (run.segbench_commit or "-")[:10] + ("+dirty" if run.segbench_dirty else "")
        table.add_row(
            str(run.id),
            run.suite_name,
            "stale" if run.gone else run.status,  # driver gone; `db repair` records it
            run.started_at.strftime("%Y-%m-%d %H:%M"),
            str(sum(c.values())),
            str(c.get("done", 0) + c.get("cached", 0)),
            str(c.get("failed", 0)),
            commit,
            run.host,
        )
    return table


def jobs_table(db_url: str | None, run: str | None) -> Table:
    from segbench.store import reads
    from segbench.store.db import open_db

    db = open_db(db_url, create=False)
    with db.sessions() as s:
        chosen = reads.find_run(s, None, run)
        jobs = reads.jobs_of_runs(s, [chosen.id])
    table = Table(title=f"jobs of run {chosen.id} ({chosen.suite_name})")
    for col in ("job", "key", "status", "label", "device", "seconds"):
        table.add_column(col)
    for job in jobs:
        secs = sum(job.stage_seconds.values())
        status = job.status + (f" → job {job.source_job_id}" if job.source_job_id else "")
        table.add_row(
            str(job.id), job.job_key, status, job.label, job.device or "", f"{secs:.1f}" if secs else ""
        )
    return table


def show_job(console: Console, db_url: str | None, job_id: int) -> None:
    from segbench.errors import UserError
    from segbench.store import reads
    from segbench.store.db import open_db

    db = open_db(db_url, create=False)
    with db.sessions() as s:
        job = reads.job(s, job_id)
        if job is None:
            raise UserError(f"no job {job_id} in {db.display_url} (see `segbench list jobs`)")
        src = reads.source_of(s, job)
        run = reads.run(s, job.run_id)
        recorded = list(reads.metrics(s, [src.id]).get(src.id, {}).values())
        evidence = reads.evidence_record(s, src.id)
    assert run is not None  # a job's run is a foreign key
    console.print(Group(*_job_parts(job, src, run, recorded, evidence)))


def _job_parts(
    job: JobRecord,
    src: JobRecord,
    run: RunRecord,
    recorded: list[MetricRecord],
    evidence: EvidenceValue | None,
) -> list[Any]:
    """``segbench show JOB``'s panels: who and where, the metrics, notes, the config, the error."""
    head = Table.grid(padding=(0, 2))
    head.add_row("job", f"{job.id} (key {job.job_key}, train key {job.train_key})")
    head.add_row("status", job.status + (f" — numbers from job {src.id}" if src.id != job.id else ""))
    head.add_row("label", job.label)
    head.add_row("run", f"{run.id} · suite {run.suite_name} · {run.suite_path}")
    head.add_row(
        "code",
        f"segbench {run.segbench_commit or '-'}{' (dirty)' if run.segbench_dirty else ''} · "
        f"suite repo {run.suite_commit or '-'}{' (dirty)' if run.suite_dirty else ''}",
    )
    gits = {repo: run.environment.get(f"{repo}_git") or {} for repo in ("segbench", "suite")}
    for repo, state in gits.items():
        changed = state.get("dirty_paths") or []
        if changed and not (repo == "suite" and state.get("root") == gits["segbench"].get("root")):
            more = f" … and {len(changed) - 10} more" if len(changed) > 10 else ""
            head.add_row(f"{repo} dirty", ", ".join(changed[:10]) + more)
    head.add_row(
        "versions", f"torch {run.torch_version} · CUDA {run.cuda_version} · cuDNN {run.cudnn_version}"
    )
    head.add_row("device", f"{src.device or '-'} on {run.host}")
    if src.hardware is not None:
        head.add_row("hardware", json.dumps(src.hardware.identity, sort_keys=True))
    head.add_row("stages (s)", json.dumps(src.stage_seconds))
    head.add_row("evidence", _evidence_summary(evidence, src.seed))
    metrics = Table(title="metrics")
    for col in ("stage", "metric", "value", "as reported", "samples"):
        metrics.add_column(col, overflow="fold")
    notes = []
    for m in recorded:
        metrics.add_row(m.stage, m.name, *_metric_cells(m))
        if m.extra and m.extra.get("uncounted"):
            notes.append(f"operators fvcore could not count ({m.name}): {json.dumps(m.extra['uncounted'])}")
        if m.extra and m.extra.get("noisy"):
            notes.append(f"{m.name}: noisy (CV {m.extra.get('cv', float('nan')):.1%} above target)")
    parts: list[Any] = [head, metrics]
    if notes:
        parts.append(Panel("\n".join(notes), title="notes"))
    parts.append(Panel(json.dumps(job.config, indent=2, sort_keys=True), title="resolved config"))
    if src.error:
        parts.append(Panel(f"{src.error}\n\n{src.traceback or ''}", title="error", border_style="red"))
    return parts


def _evidence_summary(ev: EvidenceValue | None, seed: int) -> str:
    """The per-image evidence a job recorded (what a paired bootstrap can resample), without decoding it."""
    if ev is None:
        return (
            "no per-image evidence (recorded before segbench kept it, or no eval stage): Δs have no interval"
        )
    return (
        f"{ev.images} images × {ev.classes} classes, 1 seed (seed {seed}) · arrays {', '.join(ev.arrays)} · "
        f"{len(ev.data):,} bytes ({ev.format}) · {ev.dataset}/{ev.split}, images sha {ev.images_sha[:12]}"
    )


def _metric_cells(m: MetricRecord) -> tuple[str, str, str]:
    """(raw value with unit, value as the report prints it, samples) for one recorded metric.

    Per-class metrics have no scalar value: their samples are the classes', shown by name.
    """
    from segbench.metrics import is_known, metric

    raw = "" if m.value is None else f"{m.value:.6g} {m.unit or ''}".rstrip()
    reported = ""
    if m.value is not None and is_known(m.name):
        col = metric(m.name)
        reported = f"{col.show(m.value)} {col.header}"
    samples = ""
    if m.samples:
        classes = (m.extra or {}).get("classes")
        if m.value is None and classes and len(classes) == len(m.samples):
            # a class absent from the evaluation has no IoU (recorded as null)
            samples = ", ".join(
                f"{c} {'-' if v is None else f'{v:.3g}'}" for c, v in zip(classes, m.samples, strict=True)
            )
        else:
            samples = f"{len(m.samples)} samples"
    return raw, reported, samples
