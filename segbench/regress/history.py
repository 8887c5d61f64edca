"""One metric across commits, in git ancestry order, with every run and the commits that moved it.

The x axis is history, not the clock: commits come from ``git log
--topo-order`` of the suite's repository, so a branch rebased onto main shows
its commits after main's, whenever they were measured. One line per job (and,
for timings, per machine). Every run recorded at a commit is kept: a timing's
runs at one commit are pooled as its rounds (:mod:`segbench.regress.rounds`),
and the plot shows each run with the spread of its rounds. A *step* is where a
line moves between consecutive measured commits by more than the metric's rule
allows (the same rule ``segbench compare`` applies: for timings, on the pooled
rounds), and it is marked at the commit that made it.

The plot's y axis is the change from the line's first commit, relative for
relative thresholds and in display units for absolute ones, with the
threshold drawn as a band and the axis never narrower than three thresholds
either way: a 0.5 % wobble stays a wobble.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from segbench.errors import UserError, did_you_mean
from segbench.metrics import metric
from segbench.regress import gitrev
from segbench.regress.compare import paired_test
from segbench.regress.gitrev import CommitInfo
from segbench.regress.rounds import round_medians
from segbench.regress.rules import Kind, Rule, RuleBook, resolve_metric
from segbench.regress.snapshot import RecordedJob, RunRef, collect_jobs, run_ref
from segbench.regress.stats import Decision, Verdict
from segbench.store import reads


@dataclass(frozen=True)
class RunSpread:
    """One run at a commit: its value and, for a timing, its round medians (the spread to draw)."""

    run_id: int
    value: float
    round_medians: tuple[float, ...] = ()


@dataclass(frozen=True)
class Point:
    commit: CommitInfo
    #: the commit's value: the latest run's, or for a timing the level of all its runs' rounds
    value: float
    #: a timing's rounds, every run at the commit pooled (None: not a timing)
    rounds: tuple[tuple[float, ...], ...] | None
    run_id: int
    dirty: bool
    #: the change from the previous point of the line; None for the first point
    step: Decision | None
    #: every run recorded at the commit, latest first
    runs: tuple[RunSpread, ...] = ()
    #: a timing's lockstep sweeps (id → burst medians), every run at the commit pooled
    sweeps: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def is_step(self) -> bool:
        return self.step is not None and self.step.verdict in (Verdict.improved, Verdict.regressed)


@dataclass(frozen=True)
class Line:
    job_key: str
    label: str
    hardware: str | None
    hardware_name: str | None
    points: tuple[Point, ...]

    def steps(self) -> list[Point]:
        return [p for p in self.points if p.is_step]


@dataclass(frozen=True)
class History:
    metric: str
    rule: Rule
    #: commits that have a point, oldest first
    commits: tuple[CommitInfo, ...]
    lines: tuple[Line, ...]
    #: runs measured on a dirty tree that were left out
    skipped_dirty: int


def load_history(
    session: Session,
    repo: Path,
    metric: str,
    rules: RuleBook,
    *,
    suite: str | None = None,
    model: str | None = None,
    tip: str = "HEAD",
    since: str | None = None,
    include_dirty: bool = False,
) -> History:
    """The values of ``metric`` at every commit of ``repo``'s history (up to ``tip``) that has results."""
    commits = gitrev.ancestry(repo, tip, since)
    position = {c.sha: i for i, c in enumerate(commits)}
    runs = reads.runs_at(session, position, suite)
    refs: dict[str, dict[int, RunRef]] = {}
    skipped = 0
    for run in runs:
        commit = run.suite_commit if run.suite_commit in position else run.segbench_commit
        assert commit is not None  # the query matched one of the two
        ref = run_ref(run, commit)
        if ref.dirty and not include_dirty:
            skipped += 1
            continue
        refs.setdefault(commit, {})[run.id] = ref
    if not refs:
        what = f"suite '{suite}'" if suite else "any suite"
        dirty = f" ({skipped} dirty run(s) left out: --include-dirty)" if skipped else ""
        raise UserError(f"no results of {what} at any commit in the history of {tip} in {repo}{dirty}")
    by_run = {run.id: run for run in runs}
    # per commit, one collection per run (latest run first), so every run at a commit is kept
    per_commit: dict[str, list[dict[str, tuple[RecordedJob, ...]]]] = {
        sha: [
            collect_jobs(session, {rid: ref}, by_run) for rid, ref in sorted(run_refs.items(), reverse=True)
        ]
        for sha, run_refs in refs.items()
    }
    if model is not None:
        models = {
            n
            for per_run in per_commit.values()
            for jobs in per_run
            for v in jobs.values()
            for n in (v[0].model, v[0].model_label)
        }
        if model not in models:
            raise UserError(
                f"--model '{model}': not in these results{did_you_mean(model, models)}; "
                f"models: {', '.join(sorted(models))}"
            )
        per_commit = {
            sha: [_only_model(jobs, model) for jobs in per_run] for sha, per_run in per_commit.items()
        }
    available = {
        name
        for per_run in per_commit.values()
        for jobs in per_run
        for v in jobs.values()
        for j in v
        for name in j.metrics
    }
    name = resolve_metric(metric, available)
    if name not in available:
        raise UserError(
            f"--metric {name}: not recorded at any of these commits; recorded: {', '.join(sorted(available))}"
        )
    rule = rules.rule(name)
    ordered = sorted(per_commit, key=position.__getitem__)
    lines = _lines(rule, [(commits[position[sha]], per_commit[sha]) for sha in ordered], rules.alpha)
    with_points = {p.commit.sha for line in lines for p in line.points}
    return History(
        metric=name,
        rule=rule,
        commits=tuple(commits[position[sha]] for sha in ordered if sha in with_points),
        lines=tuple(lines),
        skipped_dirty=skipped,
    )


def _only_model(
    jobs: Mapping[str, tuple[RecordedJob, ...]], model: str
) -> dict[str, tuple[RecordedJob, ...]]:
    return {k: v for k, v in jobs.items() if model in (v[0].model, v[0].model_label)}


def _lines(
    rule: Rule,
    snapshots: list[tuple[CommitInfo, list[Mapping[str, tuple[RecordedJob, ...]]]]],
    alpha: float,
) -> list[Line]:
    series: dict[tuple[str, str | None], list[tuple[CommitInfo, list[RecordedJob]]]] = {}
    for commit, per_run in snapshots:
        at_commit: dict[tuple[str, str | None], list[RecordedJob]] = {}
        for jobs in per_run:  # latest run first
            for key, versions in jobs.items():
                for job in versions if rule.hardware_bound else versions[:1]:
                    measured = job.metrics.get(rule.metric)
                    if measured is not None and measured.value is not None:
                        at_commit.setdefault((key, job.hardware if rule.hardware_bound else None), []).append(
                            job
                        )
        for where, jobs_here in at_commit.items():
            series.setdefault(where, []).append((commit, jobs_here))
    hardware_keys = {hw for _, hw in series}
    lines: list[Line] = []
    for (key, hardware), points in series.items():
        last = points[-1][1][0]
        label = last.label
        if rule.hardware_bound and len(hardware_keys) > 1:
            label += f" · {last.hardware_name or hardware}"
        lines.append(Line(key, label, hardware, last.hardware_name, tuple(_points(rule, points, alpha))))
    return sorted(lines, key=lambda line: (line.label, line.job_key))


def _points(rule: Rule, points: list[tuple[CommitInfo, list[RecordedJob]]], alpha: float) -> list[Point]:
    out: list[Point] = []
    samples_of = rule.samples_from or rule.metric
    previous: RecordedJob | None = None
    raw = 0.0
    for commit, jobs in points:
        job = jobs[0]  # the latest run at the commit
        value = job.metrics[rule.metric].value
        assert value is not None
        runs = tuple(_spread(rule, j, samples_of) for j in jobs)
        rounds = None
        sweeps: dict[str, tuple[float, ...]] = {}
        if rule.kind is Kind.timing:
            pooled = [r for j in jobs for r in (_rounds(j, samples_of) or ())]
            rounds = tuple(pooled) or None
            for j in jobs:  # a commit's runs from several `run --at` calls: each kept its sweeps
                measured = j.metrics.get(samples_of)
                sweeps.update(measured.sweeps if measured is not None else {})
        step = None
        if previous is not None:
            prev = out[-1]
            if rule.kind is Kind.timing:
                # the recorded values, not the levels: throughput's constant is read from them;
                # consecutive commits measured by one `run --at` are paired as `check` pairs them
                step = rule.decide_timing(
                    raw, value, prev.rounds, rounds, alpha=alpha, base_sweeps=prev.sweeps, head_sweeps=sweeps
                ).decision
            else:
                paired = (
                    paired_test(previous, job, rule)
                    if rule.paired and rule.threshold.exceeded(prev.value, value)
                    else None
                )
                step = rule.decide(prev.value, value, alpha=alpha, paired=paired)
        raw = value
        if rule.kind is Kind.timing and rounds is not None:
            value = rule.decide_timing(value, value, rounds, rounds, alpha=alpha).base
        out.append(Point(commit, value, rounds, job.run_id, any(j.dirty for j in jobs), step, runs, sweeps))
        previous = job
    return out


def _rounds(job: RecordedJob, samples_of: str) -> tuple[tuple[float, ...], ...] | None:
    measured = job.metrics.get(samples_of)
    return measured.rounds if measured is not None else None


def _spread(rule: Rule, job: RecordedJob, samples_of: str) -> RunSpread:
    value = job.metrics[rule.metric].value
    assert value is not None
    medians = tuple(round_medians(_rounds(job, samples_of))) if rule.kind is Kind.timing else ()
    if medians and rule.samples_from not in (None, rule.metric):
        medians = tuple(value * job.metrics[samples_of].value / m for m in medians)  # type: ignore[operator]
    return RunSpread(job.run_id, value, medians)


# -- rendering -------------------------------------------------------------------------------------

_MARK = {Verdict.regressed: ("▼", "red"), Verdict.improved: ("▲", "green"), Verdict.noisy: ("~", "yellow")}


def terminal_table(history: History):  # type: ignore[no-untyped-def]
    """A rich table: one row per commit, one column per line; steps marked ▲ (better) / ▼ (worse)."""
    from rich.table import Table

    col = metric(history.metric)
    table = Table(title=f"{col.header} across commits ({history.rule.describe_threshold()})")
    table.add_column("commit", style="bold")
    table.add_column("subject", max_width=40, overflow="ellipsis", no_wrap=True)
    for line in history.lines:
        table.add_column(line.label, justify="right")
    cells = {(line.label, p.commit.sha): p for line in history.lines for p in line.points}
    for commit in history.commits:
        row = [commit.short, commit.subject]
        for line in history.lines:
            point = cells.get((line.label, commit.sha))
            row.append(_cell(history, point) if point is not None else "")
        table.add_row(*row)
    table.caption = "▲ improved / ▼ regressed at that commit; ~ moved but not significantly; * dirty tree" + (
        f"; {history.skipped_dirty} dirty run(s) left out" if history.skipped_dirty else ""
    )
    return table


def _cell(history: History, point: Point) -> str:
    text = history.rule.format_value(point.value) + ("*" if point.dirty else "")
    if len(point.runs) > 1 or point.rounds is not None:
        rounds = f", {len(point.rounds)} rounds" if point.rounds is not None else ""
        text += f" ({len(point.runs)} run{'s' if len(point.runs) > 1 else ''}{rounds})"
    if point.step is None or point.step.verdict not in _MARK:
        return text
    mark, colour = _MARK[point.step.verdict]
    return f"[{colour}]{mark} {text}[/]"


def _offset(history: History, first: float, value: float) -> float:
    """The y of ``value`` on the plot: % change from ``first`` (relative thresholds) or the difference shown."""
    if history.rule.threshold.relative or history.rule.kind is Kind.complexity:
        return 0.0 if first == 0 else (value - first) / abs(first) * 100
    return (value - first) * metric(history.metric).scale


def plot(history: History, path: Path) -> Path:
    """A PNG: every run of every line as its change from the line's first commit, spread and verdicts marked.

    Each run is a dot at its commit (runs of one commit side by side), with a
    bar over the interquartile range of its round medians; the commit's
    verdict against the previous commit is marked above it (▼ regressed,
    ▲ improved, ~ noisy). The threshold is a band around zero, and the axis
    spans at least three thresholds either way.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: CI machines and SSH sessions have none
    import matplotlib.pyplot as plt

    col = metric(history.metric)
    rule = history.rule
    relative = rule.threshold.relative or rule.kind is Kind.complexity
    band = rule.threshold.amount * (100 if relative else col.scale)
    unit = "%" if relative else (" pts" if col.scale == 100.0 else "")
    x_of = {c.sha: i for i, c in enumerate(history.commits)}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(history.commits) + 3), 4.5))
    reach = 3 * band if band > 0 else 1.0
    try:
        ax.axhspan(-band, band, color="0.85", alpha=0.6, label=f"threshold ±{band:g}{unit}")
        ax.axhline(0, color="0.5", linewidth=0.8)
        for n, line in enumerate(history.lines):
            first = line.points[0].value
            xs = [x_of[p.commit.sha] for p in line.points]
            ys = [_offset(history, first, p.value) for p in line.points]
            (drawn,) = ax.plot(xs, ys, linewidth=1, label=line.label)
            for p in line.points:
                x = x_of[p.commit.sha]
                for i, run in enumerate(p.runs):
                    dx = (i - (len(p.runs) - 1) / 2) * 0.08 + n * 0.03
                    y = _offset(history, first, run.value)
                    if len(run.round_medians) > 1:
                        q1, _, q3 = statistics.quantiles(run.round_medians, n=4, method="inclusive")
                        lo, hi = sorted((_offset(history, first, q1), _offset(history, first, q3)))
                        ax.vlines(x + dx, lo, hi, color=drawn.get_color(), linewidth=2, alpha=0.7)
                        reach = max(reach, abs(lo), abs(hi))
                    ax.plot(x + dx, y, "o", markersize=3.5, color=drawn.get_color())
                    reach = max(reach, abs(y))
                if p.step is not None and p.step.verdict in _MARK:
                    mark = {Verdict.regressed: "v", Verdict.improved: "^", Verdict.noisy: "x"}[p.step.verdict]
                    colour = {Verdict.regressed: "tab:red", Verdict.improved: "tab:green"}.get(
                        p.step.verdict, "goldenrod"
                    )
                    y = _offset(history, first, p.value)
                    ax.plot(x, y, marker=mark, markersize=11, color=colour, linestyle="none", alpha=0.8)
        ax.set_ylim(-1.15 * reach, 1.15 * reach)
        ax.set_xticks(range(len(history.commits)))
        ax.set_xticklabels([c.sha[:7] for c in history.commits], rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("commit (git ancestry order); dots: every run, bars: IQR of its rounds")
        ax.set_ylabel(f"{col.header}: change from first commit ({unit.strip() or col.header})")
        ax.set_title(
            f"{col.header} across commits\n▼ regressed / ▲ improved / × noisy ({rule.describe_threshold()})",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path
