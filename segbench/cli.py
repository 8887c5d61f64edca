"""The ``segbench`` command line.

Thin on purpose: each command parses its options and calls the module that does
the work. Heavy imports (torch, pandas, SQLAlchemy, pydantic) happen inside the
commands, so ``segbench --help``, ``list`` and ``report`` never import torch.
Bad input exits with code 2 and a message that says what and where.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from segbench.cli_options import DbOption
from segbench.cli_output import console, emit, os_reason, print_jobs

app = typer.Typer(
    name="segbench",
    help="Benchmark and ablation harness for semantic-segmentation models, with a results database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class ReportFormat(str, Enum):
    markdown = "markdown"
    latex = "latex"
    html = "html"
    csv = "csv"
    json = "json"


class Backend(str, Enum):
    local = "local"
    ray = "ray"


class Rerun(str, Enum):
    failed = "failed"
    all = "all"


class ListWhat(str, Enum):
    models = "models"
    datasets = "datasets"
    suites = "suites"
    runs = "runs"
    jobs = "jobs"


@app.command()
def run(
    suite: Annotated[Path, typer.Argument(help="suite YAML file")],
    db: DbOption = None,
    devices: Annotated[str, typer.Option(help="auto | cpu | GPU indices like 0,1")] = "auto",
    workers: Annotated[
        int | None,
        typer.Option(help="CPU workers, at least 1 (they split the cores; default 1); with GPUs one per GPU"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the expanded jobs and exit")] = False,
    only: Annotated[
        str | None, typer.Option(help="run only jobs whose label matches (glob or substring)")
    ] = None,
    rerun: Annotated[Rerun | None, typer.Option(help="re-run jobs already recorded at this commit")] = None,
    workdir: Annotated[Path, typer.Option(help="checkpoints go under WORKDIR/checkpoints")] = Path("results"),
    at: Annotated[
        str | None,
        typer.Option(help="run the suite as it is at each of these git revisions (REV1,REV2,…)"),
    ] = None,
    backend: Annotated[
        Backend, typer.Option(help="local: worker processes here; ray: tasks on a Ray cluster")
    ] = Backend.local,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="with --backend ray: the cluster to join (auto, ray://head:10001); default: a local one"
        ),
    ] = None,
    max_jobs: Annotated[
        int | None,
        typer.Option(min=1, help="refuse a suite that expands to more jobs (a runaway grid); default 10000"),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(help="with --backend ray: times a task lost with its node is sent again (default 2)"),
    ] = None,
    retry_delay: Annotated[
        float | None,
        typer.Option(help="with --backend ray: seconds before the first retry, doubling (default 2)"),
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="timing rounds per job, each in a fresh process (default: measure.rounds, else 8 with --at, 1)",
        ),
    ] = None,
) -> None:
    """Expand a suite into jobs, run them on the available devices, record every number."""
    from segbench.config import load_suite
    from segbench.runner.devices import check_workers
    from segbench.suite import DEFAULT_MAX_JOBS, expand, select

    check_workers(workers)  # before anything runs or is recorded, --at's runs included
    if at is not None:
        placement = ["--backend", backend.value] + (["--ray-address", ray_address] if ray_address else [])
        placement += ["--max-jobs", str(max_jobs)] if max_jobs is not None else []
        placement += ["--retries", str(retries)] if retries is not None else []
        placement += ["--retry-delay", str(retry_delay)] if retry_delay is not None else []
        _run_at(suite, at, db, devices, workers, only, rerun, workdir, dry_run, placement, rounds)
        return
    loaded = load_suite(suite)
    jobs = select(expand(loaded, max_jobs=DEFAULT_MAX_JOBS if max_jobs is None else max_jobs), only)
    if not jobs:
        raise _user_error(f"--only '{only}' matches none of the suite's jobs")
    if dry_run:
        print_jobs(loaded.suite.name, jobs)
        return
    from segbench.runner.run import execute, make_backend
    from segbench.store.db import open_db

    # Bad devices, workers, a missing Ray or an unwritable workdir are refused before the database is touched.
    runner = make_backend(backend.value, devices, workers, ray_address, _retry_policy(retries, retry_delay))
    if any("train" in job.stages for job in jobs):
        from segbench.engine.checkpoint import check_workdir

        check_workdir(workdir)
    database = open_db(db)
    summary = execute(
        loaded, jobs, database, backend=runner, rerun=rerun.value if rerun else "none", workdir=workdir
    )
    screen = console()
    reused_failures = f" ({len(summary.cached_failed)} reused)" if summary.cached_failed else ""
    screen.print(
        f"run {summary.run_id}: {summary.ran} ran, {summary.cached} reused, {summary.failures()} failed"
        f"{reused_failures} in {summary.seconds:.1f}s → {database.display_url}"
    )
    for failure in summary.cached_failed:
        screen.print(f"[red]failed[/] (reused; --rerun failed retries it) {failure}")
    if summary.journaled:
        screen.print(
            f"[yellow]{len(summary.journaled)} result(s) wait in the journal[/]: the database could not take "
            "them; `segbench db repair` (or the next run) records them"
        )
    if summary.interrupted:
        screen.print("[yellow]interrupted[/]: finished jobs are recorded; run again to resume the rest")
        raise typer.Exit(130)
    _more_rounds(database.url, summary.run_id, rounds)
    if summary.failures() or summary.journaled:
        raise typer.Exit(1)


def _run_at(
    suite: Path,
    at: str,
    db: str | None,
    devices: str,
    workers: int | None,
    only: str | None,
    rerun: Rerun | None,
    workdir: Path,
    dry_run: bool,
    placement: list[str],
    rounds: int | None,
) -> None:
    """``run --at``: one ``segbench run`` per revision, in a temporary worktree, into one database."""
    from segbench.regress.at import run_at_revisions, split_revisions
    from segbench.regress.retime import AT_ROUNDS
    from segbench.store.db import resolve_url

    if dry_run:
        raise _user_error("--at runs the suite at other revisions; drop --dry-run, or drop --at to preview")
    revisions = split_revisions(at)
    extra = ["--devices", devices, "--workdir", str(workdir.resolve()), *placement]
    if workers is not None:
        extra += ["--workers", str(workers)]
    if only is not None:
        extra += ["--only", only]
    if rerun is not None:
        extra += ["--rerun", rerun.value]
    run_ids = run_at_revisions(suite, revisions, extra, resolve_url(db), rounds=rounds or AT_ROUNDS)
    console().print(
        "recorded " + ", ".join(f"run {rid} at {rev}" for rid, rev in zip(run_ids, revisions, strict=True))
    )


def _more_rounds(url: str, run_id: int, rounds: int | None) -> None:
    """A plain run's timing rounds 1 … N-1, each a sweep of one fresh worker (``run --at`` sweeps all revisions)."""
    import os

    from segbench.regress.at import absolute_db_url
    from segbench.regress.retime import ROUNDS_BY_DRIVER, Member, hold_cpu, lockstep_sweep, rounds_needed

    if os.environ.get(ROUNDS_BY_DRIVER):
        return
    total = rounds_needed(url, [run_id], rounds or 1)
    if total > 1:
        url = absolute_db_url(url)  # the rounds' processes open it too
    member = Member(run_id, f"run {run_id}", Path.cwd())
    for number in range(1, total):
        console().print(f"timing round {number + 1}/{total} (run {run_id})")
        with hold_cpu():
            problems = lockstep_sweep(url, [member], rounds or 1, console().print)
        if problems:
            raise _user_error("; ".join(problem for _, problem in problems))


@app.command()
def report(
    db: DbOption = None,
    suite: Annotated[str | None, typer.Option(help="suite name (default: the latest run's)")] = None,
    run: Annotated[str | None, typer.Option(help="run id, or 'latest'")] = None,
    format: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.markdown,
    out: Annotated[
        Path | None,
        typer.Option(help="write to this file instead of stdout (html: default reports/<suite>.html)"),
    ] = None,
    pivot: Annotated[
        str | None,
        typer.Option(help="free-form view: these dimensions as rows, e.g. model,dataset (needs --metric)"),
    ] = None,
    metric: Annotated[str | None, typer.Option(help="with --pivot: the metric in the cells")] = None,
    columns: Annotated[
        str | None, typer.Option(help="with --pivot: dimensions spread across the columns")
    ] = None,
    plots: Annotated[
        Path | None, typer.Option(help="also write the report's plots (PNG) into this folder")
    ] = None,
) -> None:
    """Render the paper-style table of a run from the database (or a free-form --pivot view)."""
    from segbench.report.query import load_report_data
    from segbench.report.table import build_table
    from segbench.store.db import open_db

    if pivot is None and (metric is not None or columns is not None):
        raise _user_error("--metric and --columns go with --pivot, e.g. --pivot model,dataset --metric mIoU")
    database = open_db(db, create=False)
    figures = pivot is None and (plots is not None or format is ReportFormat.html)
    data = load_report_data(database, suite=suite, run=run, figures=figures)
    if data.run.incomplete:
        console(stderr=True).print(f"[yellow]warning[/]: {data.run.incomplete}")
    if pivot is not None:
        from segbench.report.pivot import pivot_table

        if metric is None:
            raise _user_error("--pivot needs --metric, e.g. --pivot model,dataset --metric mIoU")
        text = pivot_table(data, _names(pivot), metric, _names(columns) if columns else None, format.value)
        emit(text, out)
        return
    table = build_table(data)
    if plots is not None:
        from segbench.report.plots import write_plots

        try:
            written = write_plots(data, table, plots)
        except OSError as exc:
            raise _user_error(f"--plots {plots}: cannot write the plots there: {os_reason(exc)}") from None
        console(stderr=True).print(f"wrote {len(written)} plot(s) to {plots}")
    if format is ReportFormat.html:
        from segbench.report.html import render_html

        target = out or Path("reports") / f"{data.run.suite_name}.html"
        emit(render_html(data, table), target)
        return
    from segbench.report.render import RENDERERS

    emit(RENDERERS[format.value](table), out)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command("list")
def list_(
    what: Annotated[ListWhat, typer.Argument(help="models | datasets | suites | runs | jobs")],
    db: DbOption = None,
    run: Annotated[str | None, typer.Option(help="for `jobs`: run id (default latest)")] = None,
    suites_dir: Annotated[Path, typer.Option(help="for `suites`: where to look")] = Path("suites"),
) -> None:
    """What is there: models and datasets segbench knows, suites on disk, recorded runs and jobs."""
    from segbench import listing

    screen = console()
    if what is ListWhat.models:
        screen.print(listing.models_table())
    elif what is ListWhat.datasets:
        screen.print(listing.datasets_table())
    elif what is ListWhat.suites:
        screen.print(listing.suites_table(suites_dir))
    elif what is ListWhat.runs:
        screen.print(listing.runs_table(db))
    else:
        screen.print(listing.jobs_table(db, run))


@app.command()
def show(
    job_id: Annotated[int, typer.Argument(help="job id (see `segbench list jobs`)")],
    db: DbOption = None,
) -> None:
    """Everything recorded about one job: config, provenance, every metric, errors."""
    from segbench import listing

    listing.show_job(console(), db, job_id)


@app.command()
def gc(
    db: DbOption = None,
    workdir: Annotated[Path, typer.Option(help="the --workdir the runs used")] = Path("results"),
    keep: Annotated[
        int, typer.Option(help="finished checkpoints kept per training configuration (newest first)")
    ] = 1,
    yes: Annotated[bool, typer.Option("--yes", help="delete them; without it, only list")] = False,
) -> None:
    """Remove training checkpoints no unfinished job needs (lists them unless --yes)."""
    from segbench.gc import apply_gc, plan_gc
    from segbench.store.db import open_db

    database = open_db(db, create=False)
    try:
        plan = plan_gc(database, workdir, keep)
    finally:
        database.close()
    screen = console()
    for f in plan.remove:  # one plain line each (no wrapping): a script can read them
        typer.echo(f"{'removing' if yes else 'would remove'} {f.path} ({f.size / 2**20:.1f} MB)")
    kept = {state: sum(f.state == state for f in plan.keep) for state in ("needed", "finished", "unknown")}
    screen.print(
        f"kept {kept['needed']} needed by unfinished jobs, {kept['finished']} newest finished "
        f"(--keep {keep}), {kept['unknown']} unknown to {database.display_url}"
    )
    if not plan.remove:
        screen.print("nothing to remove")
    elif yes:
        try:
            apply_gc(plan)
        except OSError as exc:
            raise _user_error(f"gc: cannot remove checkpoints: {os_reason(exc)}") from None
        screen.print(f"removed {len(plan.remove)} file(s), {plan.freed / 2**20:.1f} MB")
    else:
        screen.print(f"{len(plan.remove)} file(s), {plan.freed / 2**20:.1f} MB: run with --yes to delete")


def _user_error(message: str):  # type: ignore[no-untyped-def]
    from segbench.errors import UserError

    return UserError(message)


def _retry_policy(retries: int | None, delay: float | None):  # type: ignore[no-untyped-def]
    """``--retries`` / ``--retry-delay`` as the Ray backend's retry policy; None when neither is given."""
    if retries is None and delay is None:
        return None
    from segbench.runner.backend import RetryPolicy

    default = RetryPolicy()
    return RetryPolicy(
        default.retries if retries is None else retries, default.delay if delay is None else delay
    )


def _mount_command_groups() -> None:
    """Each command group mounts itself one way: its module's ``register(app)`` adds its commands."""
    from segbench.data.cli import register as register_datasets
    from segbench.regress.cli import register as register_regress

    for register in (register_datasets, register_regress):
        register(app)


_mount_command_groups()


def main() -> None:
    """Entry point: user errors print one clear message and exit 2."""
    from segbench.errors import UserError

    try:
        app()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
