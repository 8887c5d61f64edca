"""Commands ``compare``, ``check``, ``history``, ``db merge`` and ``db upgrade``, added to the segbench app by :func:`register`.

Thin like the rest of the CLI: options are parsed here, the work happens in
the modules of this package, and SQLAlchemy, scipy and matplotlib are imported
inside the commands, never at import time, so ``segbench --help`` stays
instant and torch is never imported at all.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from segbench.cli_options import DbOption

if TYPE_CHECKING:
    from segbench.regress.compare import Comparison
    from segbench.regress.rules import RuleBook, ThresholdSpec

SuiteOption = Annotated[str | None, typer.Option("--suite", help="only runs of this suite (by name)")]
MetricOption = Annotated[
    list[str] | None,
    typer.Option("--metric", "-m", help="compare only these metrics (repeat, or comma-separate)"),
]
RepoOption = Annotated[
    Path | None,
    typer.Option(
        "--repo", help="git repository revisions are resolved in (default: the current directory's)"
    ),
]
FactorOption = Annotated[
    float, typer.Option("--factor", help="timings and memory: relative change that counts (0.05 = 5%)")
]
AlphaOption = Annotated[
    float, typer.Option("--alpha", help="1 - confidence of the intervals that decide timings and accuracies")
]
ThresholdOption = Annotated[
    str | None,
    typer.Option(
        "--threshold",
        help="per-metric thresholds, e.g. 'mIoU:1.0,latency:10%' (a bare number is in the table's units)",
    ),
]
AllowDirtyOption = Annotated[
    bool, typer.Option("--allow-dirty", help="let results measured on a dirty tree be the baseline")
]


class CompareFormat(str, Enum):
    markdown = "markdown"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add ``compare``, ``check``, ``history`` and the ``db`` group (``merge``, ``repair``, ``upgrade``) to ``app``."""
    app.command("compare")(compare)
    app.command("check")(check)
    app.command("history")(history)
    db_app = typer.Typer(help="Maintain the results database.", no_args_is_help=True)
    db_app.command("merge")(merge)
    db_app.command("repair")(repair)
    db_app.command("upgrade")(upgrade)
    app.add_typer(db_app, name="db")


def compare(
    base: Annotated[str, typer.Argument(help="git revision (commit, branch, tag) or run id")],
    head: Annotated[str, typer.Argument(help="git revision or run id")] = "HEAD",
    db: DbOption = None,
    suite: SuiteOption = None,
    metric: MetricOption = None,
    format: Annotated[CompareFormat, typer.Option("--format", "-f")] = CompareFormat.markdown,
    repo: RepoOption = None,
    threshold: ThresholdOption = None,
    factor: FactorOption = 0.05,
    alpha: AlphaOption = 0.05,
    allow_dirty: AllowDirtyOption = False,
    only_changed: Annotated[bool, typer.Option("--only-changed", help="hide unchanged metrics")] = False,
) -> None:
    """Every metric of every job at BASE vs HEAD: improved, regressed, unchanged or noisy."""
    from segbench.regress.rules import RuleBook, parse_threshold_specs

    specs = parse_threshold_specs(threshold, "--threshold") if threshold else []
    comparison, _ = _compare(
        db, base, head, suite, metric, repo, allow_dirty, RuleBook(factor, alpha), specs, "--threshold"
    )
    _write(comparison, format, only_changed=only_changed)


def check(
    baseline: Annotated[str, typer.Option("--baseline", help="git revision or run id to compare against")],
    head: Annotated[str, typer.Option("--head", help="git revision or run id under test")] = "HEAD",
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="only these metrics fail the check, at these thresholds, e.g. 'latency:+5%,mIoU:-0.5'",
        ),
    ] = None,
    db: DbOption = None,
    suite: SuiteOption = None,
    metric: MetricOption = None,
    format: Annotated[CompareFormat, typer.Option("--format", "-f")] = CompareFormat.markdown,
    repo: RepoOption = None,
    factor: FactorOption = 0.05,
    alpha: AlphaOption = 0.05,
    allow_dirty: AllowDirtyOption = False,
) -> None:
    """For CI: exit 1 when anything regressed between the baseline and HEAD, 0 otherwise."""
    from segbench.regress.rules import RuleBook, parse_threshold_specs

    specs = parse_threshold_specs(fail_on, "--fail-on") if fail_on else []
    comparison, gating = _compare(
        db, baseline, head, suite, metric, repo, allow_dirty, RuleBook(factor, alpha), specs, "--fail-on"
    )
    _write(comparison, format, only_changed=True)
    regressed = comparison.regressions(gating or None)
    if format is CompareFormat.json:
        if regressed:
            raise typer.Exit(1)
        return
    if regressed:
        typer.echo(f"REGRESSED: {len(regressed)} metric(s) between {baseline} and {head}:")
        for row in regressed:
            where = f" on {row.hardware_name or row.hardware}" if row.hardware else ""
            p = f" (p = {row.decision.p_value:.3g})" if row.decision.p_value is not None else ""
            typer.echo(f"  {row.label} · {row.metric} {row.change}{where}{p}")
        raise typer.Exit(1)
    scope = f" in {', '.join(sorted(gating))}" if gating else ""
    typer.echo(f"check passed: no regression{scope} between {baseline} and {head}")


def history(
    metric: Annotated[
        str, typer.Option("--metric", "-m", help="the metric to follow, e.g. mIoU or latency_ms")
    ],
    db: DbOption = None,
    suite: SuiteOption = None,
    model: Annotated[
        str | None, typer.Option("--model", help="only jobs of this model (name or label)")
    ] = None,
    repo: RepoOption = None,
    tip: Annotated[str, typer.Option("--rev", help="history up to this revision")] = "HEAD",
    since: Annotated[str | None, typer.Option("--since", help="start at this ancestor revision")] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG to write (default reports/history_<metric>.png)")
    ] = None,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="terminal table only")] = False,
    include_dirty: Annotated[
        bool, typer.Option("--include-dirty", help="also show results measured on a dirty tree (marked *)")
    ] = False,
    factor: FactorOption = 0.05,
    alpha: AlphaOption = 0.05,
) -> None:
    """A metric across commits in git ancestry order, with the commits that stepped it marked."""
    from rich.console import Console

    from segbench.regress.gitrev import require_repo
    from segbench.regress.history import load_history, terminal_table
    from segbench.regress.history import plot as plot_png
    from segbench.regress.rules import RuleBook
    from segbench.store.db import open_db

    root = require_repo(repo or Path.cwd(), "--repo" if repo else "history (current directory)")
    database = open_db(db, create=False)
    with database.sessions() as session:
        found = load_history(
            session,
            root,
            metric,
            RuleBook(factor, alpha),
            suite=suite,
            model=model,
            tip=tip,
            since=since,
            include_dirty=include_dirty,
        )
    console = Console()
    console.print(terminal_table(found))
    for line in found.lines:
        for point in line.steps():
            assert point.step is not None
            console.print(
                f"{point.step.verdict.value} at {point.commit.short} ({point.commit.subject}): "
                f"{line.label} → {found.rule.format_value(point.value)}"
            )
    if not no_plot:
        path = plot_png(found, plot or Path("reports") / f"history_{found.metric}.png")
        console.print(f"wrote {path}")


def merge(
    other: Annotated[str, typer.Argument(help="the other database: a SQLAlchemy URL or a SQLite file path")],
    db: DbOption = None,
) -> None:
    """Merge results recorded in another database (another machine's) into this one, without duplicates."""
    from segbench.store.db import open_db
    from segbench.store.merge import merge_databases
    from segbench.store.recorder import repair as repair_database

    source_url = other if "://" in other else _sqlite_url(Path(other))
    target = open_db(db)
    for line in repair_database(target):
        typer.echo(f"repaired {line}")
    source = open_db(source_url, create=False)
    try:
        summary = merge_databases(target, source)
    finally:
        source.close()
    typer.echo(f"merged {source.display_url} → {target.display_url}: {summary.describe()}")


def repair(db: DbOption = None) -> None:
    """Close runs whose driver died (interrupted, with their unfinished jobs) and record journaled results."""
    from segbench.store.db import open_existing
    from segbench.store.recorder import repair as repair_database

    database = open_existing(db, purpose="repair")
    lines = repair_database(database)
    for line in lines:
        typer.echo(line)
    typer.echo(
        f"{database.display_url}: {len(lines)} change(s)"
        if lines
        else f"{database.display_url}: nothing to repair"
    )


def upgrade(db: DbOption = None) -> None:
    """Bring an existing database to this segbench's schema (read-only commands never migrate)."""
    from segbench.store.db import display_url, upgrade_db

    before, now = upgrade_db(db)
    if before == now:
        typer.echo(f"{display_url(db)} is already at schema revision {now}")
    else:
        typer.echo(f"upgraded {display_url(db)} from schema revision {before} to {now}")


def _sqlite_url(path: Path) -> str:
    from segbench.errors import UserError

    if not path.is_file():
        raise UserError(f"db merge: {path}: no such database file (or give a URL like sqlite:///path.db)")
    return f"sqlite:///{path.resolve()}"


def _compare(
    db: str | None,
    base: str,
    head: str,
    suite: str | None,
    metric: list[str] | None,
    repo: Path | None,
    allow_dirty: bool,
    rules: RuleBook,
    specs: list[ThresholdSpec],
    option: str,
) -> tuple[Comparison, set[str]]:
    """The comparison, and the metrics ``--fail-on`` gates (none for ``--threshold``)."""
    from segbench.errors import UserError
    from segbench.regress.compare import compare as compare_snapshots
    from segbench.regress.gitrev import repo_root, require_repo
    from segbench.regress.noise import load_noise
    from segbench.regress.rules import resolve_metric
    from segbench.regress.snapshot import load_snapshot, resolve_target
    from segbench.store.db import open_db

    root = require_repo(repo) if repo is not None else repo_root(Path.cwd())
    database = open_db(db, create=False)
    with database.sessions() as session:
        base_snap = load_snapshot(
            session, resolve_target(session, base, root), suite=suite, allow_dirty=allow_dirty, role="BASE"
        )
        head_snap = load_snapshot(session, resolve_target(session, head, root), suite=suite, role="HEAD")
        noise = load_noise(session, base_snap, head_snap)
    available = base_snap.metric_names() | head_snap.metric_names()
    rules = rules.with_specs(specs, available, option) if specs else rules
    gating = [resolve_metric(s.name, available, option) for s in specs] if option == "--fail-on" else []
    for name in gating:
        if name not in available:
            # a CI gate on a metric nobody measured would pass forever
            raise UserError(
                f"--fail-on {name}: not recorded at BASE or HEAD; recorded: {', '.join(sorted(available))}"
            )
    names = None
    if metric:
        wanted = [m.strip() for item in metric for m in item.split(",") if m.strip()]
        names = list(dict.fromkeys([*(resolve_metric(m, available) for m in wanted), *gating]))
    comparison = compare_snapshots(base_snap, head_snap, rules, names, noise)
    if not set(base_snap.jobs) & set(head_snap.jobs):
        raise UserError(
            f"BASE {base_snap.describe()} and HEAD {head_snap.describe()} share no job (no job_key in common): "
            "different suites, or a suite whose settings changed; pick revisions that ran the same suite"
        )
    return comparison, set(gating)


def _write(comparison: Comparison, format: CompareFormat, *, only_changed: bool) -> None:
    from segbench.regress.compare import markdown, to_json

    text = (
        to_json(comparison)
        if format is CompareFormat.json
        else markdown(comparison, only_changed=only_changed)
    )
    sys.stdout.write(text)
