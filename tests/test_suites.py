"""The papers' ablation suites in ``suites/``.

Every suite loads and expands to the paper's rows (job counts pinned), dry-runs through the
CLI, names in its header the change that switches it to the real dataset (and that change
validates), and lays its report out with factors and metrics that exist. One non-quickstart
suite, DeepLab v3+ Table 3 (``deeplab_ablation``), runs end to end at tiny size: its
evaluation-only factors (eval output stride, multi-scale, flip) reuse four trained checkpoints.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from segbench.config import load_suite, parse_suite
from segbench.data.catalog import DIAGNOSTIC, get_dataset_entry
from segbench.jobs import JobSpec
from segbench.metrics import METRICS as KNOWN
from segbench.suite import expand, varied_factors
from tests.test_spine import REPO, db_rows, segbench

SUITES = REPO / "suites"

#: Jobs per suite: the paper's rows, each experiment once.
JOB_COUNTS = {
    "cgnet_ablation": 12,  # 4 (M3N15 block) + 4 (M3N21 block) + 4 (depth: M3N9, M3N12, M3N18, M6N12)
    "deeplab_ablation": 14,  # v3+ Table 3: 4 no decoder + 6 decoder + 4 train OS 32
    "deeplab_decoder": 10,  # v3+ Table 1 (5 channel widths) + Table 2 (5 more structures)
    "deeplabv3_output_stride": 7,  # v3 Table 1 (OS 8/16/32) + Table 5 (4 more rows)
    "fcn_skips": 3,  # FCN-32s, 16s, 8s
    "pspnet_ppm": 11,  # PSPNet Table 1 (7 rows) + Table 2 (4 more aux weights)
    "quickstart": 2,
    "zoo": 12,  # 6 families + 6 torchvision references
}

#: Distinct checkpoints per suite (None: the suite does not train).
TRAININGS = {
    "cgnet_ablation": 12,
    "deeplab_ablation": 4,  # train OS 16/32 x decoder; eval OS, MS and flip reuse them
    "deeplab_decoder": 10,
    "deeplabv3_output_stride": 7,
    "fcn_skips": 3,
    "pspnet_ppm": 11,
    "quickstart": 2,
    "zoo": None,
}

_TRIMAP = re.compile(r"^trimap_miou@(\d+)$")
_REAL_DATASET = re.compile(r"datasets\[0\] (?:=|to) \{name: ([\w.-]+), root: ([^}\s]+)\}")


def suite_path(name: str) -> Path:
    return SUITES / f"{name}.yaml"


def header(name: str) -> str:
    """The suite's leading comment block, without the '#' marks."""
    lines = []
    for line in suite_path(name).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def test_every_suite_file_is_pinned() -> None:
    assert sorted(p.stem for p in SUITES.glob("*.yaml")) == sorted(JOB_COUNTS)


@pytest.mark.parametrize("name", sorted(JOB_COUNTS))
def test_suite_expands_to_its_pinned_jobs(name: str) -> None:
    loaded = load_suite(suite_path(name))
    assert loaded.suite.name == name
    jobs = expand(loaded)
    assert len(jobs) == JOB_COUNTS[name]
    assert len({job.job_key for job in jobs}) == len(jobs)
    trainings = {job.train_key for job in jobs} if "train" in loaded.suite.stages else None
    assert (len(trainings) if trainings is not None else None) == TRAININGS[name]


@pytest.mark.parametrize("name", sorted(JOB_COUNTS))
def test_report_section_fits_the_suite(name: str) -> None:
    """Rows, labels, columns and baseline name things the jobs have: the table renders."""
    loaded = load_suite(suite_path(name))
    report, suite = loaded.suite.report, loaded.suite
    jobs = expand(loaded)
    rows = report.rows if report.rows is not None else varied_factors(jobs)
    assert set(rows) <= set(varied_factors(jobs))
    assert set(report.labels) <= set(rows)
    for column in report.columns or []:
        trimap = _TRIMAP.match(column)
        assert column in KNOWN or (trimap and int(trimap.group(1)) in suite.eval.trimap_widths), column
    for metric in report.delta or []:
        assert metric in (report.columns or []), metric
    if report.baseline is not None:
        assert set(report.baseline) <= {*rows, "variant"}
        matches = [job for job in jobs if _is_baseline(job, report.baseline)]
        assert len(matches) == 1, f"baseline {report.baseline} matches {len(matches)} jobs"


def _is_baseline(job: JobSpec, wanted: dict[str, Any]) -> bool:
    def value(key: str) -> Any:
        return job.variant if key == "variant" else job.factors.get(key)

    def norm(v: Any) -> Any:
        return list(v) if isinstance(v, list | tuple) else v

    return all(norm(value(k)) == norm(v) for k, v in wanted.items())


@pytest.mark.parametrize("name", sorted(JOB_COUNTS))
def test_dry_run_through_the_cli(name: str, tmp_path: Path) -> None:
    proc = segbench("run", str(suite_path(name)), "--dry-run", cwd=tmp_path, check=True)
    assert f"{name}: {JOB_COUNTS[name]} job(s)" in proc.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", sorted(JOB_COUNTS))
def test_header_names_the_switch_to_real_data(name: str, tmp_path: Path) -> None:
    """The header says which datasets[0] to write; written in, the suite still expands.

    The root must exist when the suite loads, so the header's root (``/data/...``) is
    stood in for by an empty folder here.
    """
    text = header(name)
    found = _REAL_DATASET.search(text)
    assert found, f"{name}: the header does not say 'datasets[0] = {{name: ..., root: ...}}'"
    dataset, root = found.groups()
    assert dataset != DIAGNOSTIC
    get_dataset_entry(dataset)  # a catalogued dataset
    data = yaml.safe_load(suite_path(name).read_text(encoding="utf-8"))
    assert root.startswith("/")
    stand_in = str(tmp_path / root.lstrip("/"))
    Path(stand_in).mkdir(parents=True)
    data["datasets"][0] = {"name": dataset, "root": stand_in}
    real = parse_suite(yaml.safe_dump(data, sort_keys=False), f"{name} on {dataset}")
    jobs = expand(real)
    assert len(jobs) == JOB_COUNTS[name]
    assert {(job.dataset, job.dataset_root) for job in jobs} == {(dataset, stand_in)}
    if name != "quickstart":
        assert "The paper's setting:" in text and "CPU defaults:" in text


# --- deeplab_ablation end to end, tiny --------------------------------------------------------

_MS = "0.5,0.75,1.0,1.25,1.5,1.75"
#: (train OS, eval OS, Decoder, MS, Flip) cells of the report, block by block, in the paper's order.
TABLE_3 = {
    "no decoder": [
        ("16", "16", "", "1.0", ""),
        ("16", "8", "", "1.0", ""),
        ("16", "8", "", _MS, ""),
        ("16", "8", "", _MS, "✓"),
    ],
    "decoder": [
        ("16", "16", "✓", "1.0", ""),
        ("16", "16", "✓", _MS, ""),
        ("16", "16", "✓", _MS, "✓"),
        ("16", "8", "✓", "1.0", ""),
        ("16", "8", "✓", _MS, ""),
        ("16", "8", "✓", _MS, "✓"),
    ],
    "train OS 32": [
        ("32", "32", "", "1.0", ""),
        ("32", "32", "✓", "1.0", ""),
        ("32", "16", "✓", "1.0", ""),
        ("32", "8", "✓", "1.0", ""),
    ],
}


def tiny_copy(name: str, directory: Path) -> Path:
    """The suite as it is (variants, report), shrunk: 64 px, width 0.125, 2 iterations of 2 images."""
    data = yaml.safe_load(suite_path(name).read_text(encoding="utf-8"))
    data["datasets"][0]["options"] = {"size": 64, "train_length": 16, "val_length": 2}
    for model in data["models"]:
        model["options"] = {**model.get("options", {}), "width": 0.125}
    data["train"].update(iterations=2, batch_size=2, crop_size=64)
    data["eval"]["batch_size"] = 2
    data["measure"].update(input_size=[64, 64], warmup=1, iters=3, min_iters=3, memory=False)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def markdown_blocks(report: str) -> dict[str, list[list[str]]]:
    """Block name → the cells of its table rows (header and rule left out)."""
    blocks: dict[str, list[list[str]]] = {}
    current = None
    for line in report.splitlines():
        bold = re.fullmatch(r"\*\*(.+)\*\*", line.strip())
        if bold:
            current = blocks.setdefault(bold.group(1), [])
        elif line.startswith("| ") and current is not None and not line.startswith("| train OS"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
    return blocks


@pytest.mark.slow
def test_deeplab_ablation_end_to_end_reuses_checkpoints(tmp_path: Path) -> None:
    tiny_copy("deeplab_ablation", tmp_path)
    db = tmp_path / "results" / "segbench.db"
    run = segbench("run", "deeplab_ablation.yaml", "--devices", "cpu", cwd=tmp_path, check=True)
    assert "14 ran, 0 reused, 0 failed" in run.stdout

    jobs = db_rows(db, "select id, status, train_key from jobs order by position")
    assert [status for _, status, _ in jobs] == ["done"] * 14
    assert len({key for _, _, key in jobs}) == 4
    # Each checkpoint is trained once: the first job of its train_key trains (resumed_from 0),
    # every other job of that key loads the finished checkpoint (resumed_from = iterations).
    resumed = {
        job_id: json.loads(extra)["resumed_from"]
        for job_id, extra in db_rows(db, "select job_id, extra from metrics where name = 'train_seconds'")
    }
    assert sorted(resumed.values()) == [0] * 4 + [2] * 10
    first_of_key: dict[str, int] = {}
    for job_id, _, key in jobs:
        first_of_key.setdefault(key, job_id)
    assert {j for j, r in resumed.items() if r == 0} == set(first_of_key.values())
    assert len(list((tmp_path / "results" / "checkpoints").glob("*/*.pt"))) == 4

    report = segbench("report", "--format", "markdown", cwd=tmp_path, check=True).stdout
    assert (
        "| train OS | eval OS | Decoder | MS | Flip | mIoU (%) | trimap mIoU 3px (%) | GFLOPs "
        "| GFLOPs (MS+flip) | Δ trimap mIoU 3px (%) | Δ mIoU (%) |"
    ) in report
    blocks = markdown_blocks(report)
    assert list(blocks) == list(TABLE_3)
    for name, rows in TABLE_3.items():
        assert [tuple(cells[:5]) for cells in blocks[name]] == rows, name
    assert blocks["no decoder"][0][-1] == "baseline"
    # Multiply-adds over every scale and flip only where the evaluation is multi-scale or flipped.
    for cells in (row for rows in blocks.values() for row in rows):
        assert (cells[8] == "—") == (cells[3] == "1.0" and cells[4] == ""), cells

    rows = json.loads(segbench("report", "--format", "json", cwd=tmp_path, check=True).stdout)["rows"]
    by_setting = {
        (r["output_stride"], r["eval.output_stride"], r["decoder"], len(r["eval.scales"]), r["eval.flip"]): r
        for r in rows
    }
    # The FLOPs are counted at the evaluation's output stride: eval OS 8 costs more than 16.
    assert by_setting[(16, 8, False, 1, False)]["macs"] > 2 * by_setting[(16, 16, False, 1, False)]["macs"]
    assert by_setting[(32, 8, True, 1, False)]["macs"] > by_setting[(32, 32, True, 1, False)]["macs"]
    ms, ms_flip = by_setting[(16, 8, True, 6, False)], by_setting[(16, 8, True, 6, True)]
    assert ms_flip["macs_inference"] == pytest.approx(2 * ms["macs_inference"], rel=1e-6)
    assert all(0.0 <= r["mIoU"] <= 1.0 for r in rows)
