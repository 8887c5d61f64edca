"""BASE vs HEAD: match jobs, decide every metric, render the verdicts.

Jobs are matched by ``job_key`` (the same experiment). Hardware-bound metrics
(timings, memory) are matched on the same hardware key as well; where the two
sides ran on different machines, the row says so instead of comparing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from segbench.bootstrap import CONFIDENCE, paired_delta
from segbench.metrics import Kind, metric, order
from segbench.regress.rounds import Noise
from segbench.regress.rules import Rule, RuleBook
from segbench.regress.snapshot import RecordedJob, Snapshot
from segbench.regress.stats import Decision, Verdict


@dataclass(frozen=True)
class Row:
    """One metric of one job, BASE vs HEAD."""

    job_key: str
    label: str
    metric: str
    rule: Rule
    base: float | None
    head: float | None
    decision: Decision
    #: hardware key (hardware-bound metrics only)
    hardware: str | None = None
    hardware_name: str | None = None

    @property
    def verdict(self) -> Verdict:
        return self.decision.verdict

    @property
    def change(self) -> str:
        if self.base is None or self.head is None:
            return ""
        return self.rule.format_change(self.base, self.head)


@dataclass(frozen=True)
class Comparison:
    base: Snapshot
    head: Snapshot
    rules: RuleBook
    rows: tuple[Row, ...]
    only_base: tuple[str, ...]
    only_head: tuple[str, ...]

    def counts(self) -> Counter[Verdict]:
        return Counter(row.verdict for row in self.rows)

    def regressions(self, gating: Collection[str] | None = None) -> list[Row]:
        """Regressed rows, of the ``gating`` metrics only when given."""
        return [
            row
            for row in self.rows
            if row.verdict is Verdict.regressed and (gating is None or row.metric in gating)
        ]

    def hardware_names(self) -> dict[str, str]:
        return {r.hardware: r.hardware_name or r.hardware for r in self.rows if r.hardware is not None}


def default_metrics(base: Snapshot, head: Snapshot) -> list[str]:
    """Every benchmark number either side recorded, in the reports' order."""
    return order({n for n in base.metric_names() | head.metric_names() if metric(n).compared})


def compare(
    base: Snapshot,
    head: Snapshot,
    rules: RuleBook,
    metrics: Sequence[str] | None = None,
    noise: Mapping[tuple[str, str | None], Noise] | None = None,
) -> Comparison:
    """Every metric (or ``metrics``) of every job present at both revisions.

    ``noise`` is the history's between-run noise per (job_key, hardware)
    (:func:`segbench.regress.noise.load_noise`), which timing verdicts respect.
    """
    names = list(metrics) if metrics is not None else default_metrics(base, head)
    common = sorted(set(base.jobs) & set(head.jobs), key=lambda k: (head.latest(k).label, k))
    rows: list[Row] = []
    noise = noise or {}
    for key in common:
        for name in names:
            rule = rules.rule(name)
            if rule.hardware_bound:
                rows += _hardware_rows(base, head, key, rule, rules.alpha, noise)
            else:
                row = _row(base.latest(key), head.latest(key), rule, rules.alpha)
                if row is not None:
                    rows.append(row)
    only_base = tuple(sorted(base.latest(k).label for k in set(base.jobs) - set(head.jobs)))
    only_head = tuple(sorted(head.latest(k).label for k in set(head.jobs) - set(base.jobs)))
    return Comparison(base, head, rules, tuple(rows), only_base, only_head)


def _hardware_rows(
    base: Snapshot,
    head: Snapshot,
    key: str,
    rule: Rule,
    alpha: float,
    noise: Mapping[tuple[str, str | None], Noise],
) -> list[Row]:
    pairs = [(b, head.on(key, b.hardware)) for b in base.jobs[key]]
    rows = [_row(b, h, rule, alpha, noise.get((key, b.hardware))) for b, h in pairs if h is not None]
    if any(h is not None for _, h in pairs):
        return [r for r in rows if r is not None]
    b, h = base.latest(key), head.latest(key)
    row = _row(b, h, rule, alpha)
    if row is None or row.verdict is Verdict.missing:
        return [row] if row is not None else []
    note = (
        f"BASE ran on {b.hardware_name or b.hardware} [{b.hardware}], HEAD on "
        f"{h.hardware_name or h.hardware} [{h.hardware}]: {rule.kind.value} is only compared on one machine"
    )
    return [
        Row(key, h.label, rule.metric, rule, row.base, row.head, Decision(Verdict.incomparable, note=note))
    ]


def _row(b: RecordedJob, h: RecordedJob, rule: Rule, alpha: float, noise: Noise | None = None) -> Row | None:
    bm, hm = b.metrics.get(rule.metric), h.metrics.get(rule.metric)
    bv = bm.value if bm is not None else None
    hv = hm.value if hm is not None else None
    hardware = (h.hardware, h.hardware_name) if rule.hardware_bound else (None, None)
    if bv is None and hv is None:
        return None  # not measured for this job (a stage it does not run)
    if bv is None or hv is None:
        side = "HEAD" if bv is None else "BASE"
        decision = Decision(Verdict.missing, note=f"recorded in {side} only")
        return Row(b.job_key, h.label, rule.metric, rule, bv, hv, decision, *hardware)
    samples_of = rule.samples_from or rule.metric
    bs, hs = b.metrics.get(samples_of), h.metrics.get(samples_of)
    if rule.kind is Kind.timing:
        found = rule.decide_timing(
            bv,
            hv,
            bs.rounds if bs is not None else None,
            hs.rounds if hs is not None else None,
            alpha=alpha,
            noise=noise,
            base_sweeps=bs.sweeps if bs is not None else None,
            head_sweeps=hs.sweeps if hs is not None else None,
        )
        return Row(b.job_key, h.label, rule.metric, rule, found.base, found.head, found.decision, *hardware)
    paired = paired_test(b, h, rule) if rule.paired and rule.threshold.exceeded(bv, hv) else None
    decision = rule.decide(
        bv,
        hv,
        bs.samples if bs is not None else None,
        hs.samples if hs is not None else None,
        alpha=alpha,
        paired=paired,
    )
    return Row(b.job_key, h.label, rule.metric, rule, bv, hv, decision, *hardware)


def paired_test(b: RecordedJob, h: RecordedJob, rule: Rule) -> tuple[float | None, str]:
    """``(p, note)`` of the paired bootstrap over the images both sides evaluated; p None: not testable."""
    missing = [side for side, job in (("BASE", b), ("HEAD", h)) if job.evidence is None]
    if missing:
        return None, f"no per-image evidence in {' and '.join(missing)} (older result): threshold only"
    assert b.evidence is not None and h.evidence is not None
    if not (b.evidence.has(rule.metric) and h.evidence.has(rule.metric)):
        return None, "no per-image evidence for this metric: threshold only"
    if not b.evidence.same_images(h.evidence):
        return None, "evaluated on different images: threshold only"
    test = paired_delta([h.evidence.per_image(rule.metric)], [b.evidence.per_image(rule.metric)], rule.metric)
    low, high = (metric(rule.metric).show_signed(v) for v in (test.low, test.high))
    return (
        test.p_value,
        f"paired bootstrap over {test.images} images, Δ {CONFIDENCE:.0%} interval [{low}, {high}]",
    )


# -- rendering -------------------------------------------------------------------------------------


_SHOWN = {Verdict.regressed: "**regressed**", Verdict.improved: "improved"}


def summary_line(comparison: Comparison) -> str:
    counts = comparison.counts()
    order = [Verdict.regressed, Verdict.improved, Verdict.noisy, Verdict.unchanged]
    order += [Verdict.incomparable, Verdict.missing]
    return ", ".join(f"{counts[v]} {v.value}" for v in order if counts[v]) or "nothing to compare"


def rules_line(comparison: Comparison) -> str:
    """Which threshold decided each metric present, grouped by kind, so a reader can trust a verdict."""
    groups: dict[tuple[Kind, str], list[str]] = {}
    for row in comparison.rows:
        metrics = groups.setdefault((row.rule.kind, row.rule.describe_threshold(comparison.rules.alpha)), [])
        if row.metric not in metrics:
            metrics.append(row.metric)
    return "; ".join(f"{kind.value}: {', '.join(metrics)} {rule}" for (kind, rule), metrics in groups.items())


def markdown(comparison: Comparison, *, only_changed: bool = False) -> str:
    base, head = comparison.base, comparison.head
    hardware = comparison.hardware_names()
    lines = [f"### BASE {base.describe()} → HEAD {head.describe()}", ""]
    rows = [r for r in comparison.rows if not only_changed or r.verdict is not Verdict.unchanged]
    if rows:
        lines.append("| job | metric | base | head | change | p | verdict | note |")
        lines.append("|:---|:---|---:|---:|---:|---:|:---|:---|")
        for r in rows:
            header = metric(r.metric).header
            if r.hardware is not None and len(hardware) > 1:
                header += f" · {hardware[r.hardware]}"
            p = f"{r.decision.p_value:.3g}" if r.decision.p_value is not None else ""
            verdict = _SHOWN.get(r.verdict, r.verdict.value)
            cells = [r.label, header, r.rule.format_value(r.base), r.rule.format_value(r.head)]
            cells += [r.change, p, verdict, r.decision.note]
            lines.append("| " + " | ".join(c.replace("|", "\\|") or " " for c in cells) + " |")
        lines.append("")
    elif comparison.rows:
        lines += ["Every compared metric is unchanged.", ""]
    lines.append(f"**{summary_line(comparison)}**")
    lines.append("")
    notes = [f"Thresholds — {rules_line(comparison)}." if comparison.rows else ""]
    # what the table hides (unchanged) still says how it was decided, where a test decided it
    shown = {id(r) for r in rows}
    notes += [
        f"{r.label} · {r.metric} unchanged ({r.change}): {r.decision.note}"
        for r in comparison.rows
        if id(r) not in shown and r.decision.note
    ]
    if len(hardware) == 1:
        ((key, name),) = hardware.items()
        notes.append(f"Timings and memory compared on {name} [{key}].")
    for snap, side in ((base, "BASE"), (head, "HEAD")):
        if snap.dirty:
            notes.append(f"{side} includes results measured on a dirty (uncommitted) tree.")
        if snap.skipped_dirty:
            runs = ", ".join(map(str, snap.skipped_dirty))
            notes.append(f"{side}: run(s) {runs} measured on a dirty tree were left out (--allow-dirty).")
    if comparison.only_base:
        notes.append(f"Only in BASE (not compared): {', '.join(comparison.only_base)}.")
    if comparison.only_head:
        notes.append(f"Only in HEAD (not compared): {', '.join(comparison.only_head)}.")
    lines += [f"- {n}" for n in notes if n]
    return "\n".join(lines) + "\n"


def to_json(comparison: Comparison) -> str:
    def side(snap: Snapshot) -> dict[str, object]:
        return {
            "revision": snap.target.text,
            "commit": snap.commit,
            "runs": [r.id for r in snap.runs],
            "dirty": snap.dirty,
            "skipped_dirty_runs": list(snap.skipped_dirty),
        }

    doc = {
        "base": side(comparison.base),
        "head": side(comparison.head),
        "summary": {v.value: n for v, n in comparison.counts().items()},
        "rows": [
            {
                "job_key": r.job_key,
                "label": r.label,
                "metric": r.metric,
                "kind": r.rule.kind.value,
                "hardware": r.hardware,
                "base": r.base,
                "head": r.head,
                "change": r.change,
                "p_value": r.decision.p_value,
                "verdict": r.verdict.value,
                "threshold": r.rule.describe_threshold(comparison.rules.alpha),
                "note": r.decision.note,
            }
            for r in comparison.rows
        ],
        "only_base": list(comparison.only_base),
        "only_head": list(comparison.only_head),
    }
    return json.dumps(doc, indent=2) + "\n"
