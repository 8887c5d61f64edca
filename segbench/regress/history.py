"""One metric across commits, in git ancestry order, with the commits that moved it.

The x axis is history, not the clock: commits come from ``git log
--topo-order`` of the suite's repository, so a branch rebased onto main shows
its commits after main's, whenever they were measured. One line per job (and,
for timings, per machine). A *step* is where a line moves between consecutive
measured commits by more than the metric's rule allows (the same rule
``segbench compare`` applies), and it is marked at the commit that made it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from segbench.errors import UserError, did_you_mean
from segbench.metrics import metric
from segbench.regress import gitrev
from segbench.regress.compare import paired_test
from segbench.regress.gitrev import CommitInfo
from segbench.regress.rules import Rule, RuleBook, resolve_metric
from segbench.regress.snapshot import RecordedJob, RunRef, collect_jobs, run_ref
from segbench.regress.stats import Decision, Verdict
from segbench.store import reads


@dataclass(frozen=True)
class Point:
    commit: CommitInfo
    value: float
    samples: tuple[float, ...] | None
    run_id: int
    dirty: bool
    #: the change from the previous point of the line; None for the first point
    step: Decision | None

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
    per_commit: dict[str, dict[str, tuple[RecordedJob, ...]]] = {
        sha: collect_jobs(session, run_refs, by_run) for sha, run_refs in refs.items()
    }
    if model is not None:
        models = {
            n for jobs in per_commit.values() for v in jobs.values() for n in (v[0].model, v[0].model_label)
        }
        if model not in models:
            raise UserError(
                f"--model '{model}': not in these results{did_you_mean(model, models)}; "
                f"models: {', '.join(sorted(models))}"
            )
        per_commit = {sha: _only_model(jobs, model) for sha, jobs in per_commit.items()}
    available = {name for jobs in per_commit.values() for v in jobs.values() for j in v for name in j.metrics}
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
    rule: Rule, snapshots: list[tuple[CommitInfo, Mapping[str, tuple[RecordedJob, ...]]]], alpha: float
) -> list[Line]:
    series: dict[tuple[str, str | None], list[tuple[CommitInfo, RecordedJob]]] = {}
    for commit, jobs in snapshots:
        for key, versions in jobs.items():
            chosen = versions if rule.hardware_bound else versions[:1]
            for job in chosen:
                measured = job.metrics.get(rule.metric)
                if measured is not None and measured.value is not None:
                    series.setdefault((key, job.hardware if rule.hardware_bound else None), []).append(
                        (commit, job)
                    )
    hardware_keys = {hw for _, hw in series}
    lines: list[Line] = []
    for (key, hardware), points in series.items():
        last = points[-1][1]
        label = last.label
        if rule.hardware_bound and len(hardware_keys) > 1:
            label += f" · {last.hardware_name or hardware}"
        lines.append(Line(key, label, hardware, last.hardware_name, tuple(_points(rule, points, alpha))))
    return sorted(lines, key=lambda line: (line.label, line.job_key))


def _points(rule: Rule, points: list[tuple[CommitInfo, RecordedJob]], alpha: float) -> list[Point]:
    out: list[Point] = []
    samples_of = rule.samples_from or rule.metric
    previous: RecordedJob | None = None
    for commit, job in points:
        value = job.metrics[rule.metric].value
        assert value is not None
        sampled = job.metrics.get(samples_of)
        samples = sampled.samples if sampled is not None else None
        step = None
        if previous is not None:
            prev = out[-1]
            paired = (
                paired_test(previous, job, rule)
                if rule.paired and rule.threshold.exceeded(prev.value, value)
                else None
            )
            step = rule.decide(prev.value, value, prev.samples, samples, alpha=alpha, paired=paired)
        out.append(Point(commit, value, samples, job.run_id, job.dirty, step))
        previous = job
    return out


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
    if point.step is None or point.step.verdict not in _MARK:
        return text
    mark, colour = _MARK[point.step.verdict]
    return f"[{colour}]{mark} {text}[/]"


def plot(history: History, path: Path) -> Path:
    """A PNG: one line per job, x = commits in ancestry order, steps marked at the commit that made them."""
    import matplotlib

    matplotlib.use("Agg")  # no display: CI machines and SSH sessions have none
    import matplotlib.pyplot as plt

    col = metric(history.metric)
    x_of = {c.sha: i for i, c in enumerate(history.commits)}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(history.commits) + 3), 4.5))
    try:
        for line in history.lines:
            xs = [x_of[p.commit.sha] for p in line.points]
            ys = [p.value * col.scale for p in line.points]
            (drawn,) = ax.plot(xs, ys, marker="o", markersize=4, label=line.label)
            for p in line.steps():
                worse = p.step is not None and p.step.verdict is Verdict.regressed
                ax.plot(
                    x_of[p.commit.sha],
                    p.value * col.scale,
                    marker="v" if worse else "^",
                    markersize=11,
                    color="tab:red" if worse else "tab:green",
                    markeredgecolor=drawn.get_color(),
                    linestyle="none",
                )
        ax.set_xticks(range(len(history.commits)))
        ax.set_xticklabels([c.sha[:7] for c in history.commits], rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("commit (git ancestry order)")
        ax.set_ylabel(col.header)
        ax.set_title(
            f"{col.header} across commits\n▲ improved / ▼ regressed ({history.rule.describe_threshold()})",
            fontsize=10,
        )
        ax.grid(alpha=0.3)
        if history.lines:
            ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path
