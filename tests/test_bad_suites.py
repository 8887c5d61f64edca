"""Bad suites through the real CLI: exit 2, the file:line:field, no traceback, nothing recorded.

Each row of ``CASES`` is one way a suite can be wrong that used to be recorded silently
(a quoted boolean built the PPM the table said was off), fail late in every job
(``measure.iters`` below ``min_iters``), or crash the loader (a YAML bomb, binary input).
``segbench run FILE --db sqlite:///...`` runs in-process through ``segbench.cli.main``
(the entry point users get), so the exit code and the printed message are the real ones;
two rows also run as a subprocess to show that no traceback reaches the terminal.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from segbench.cli import main
from segbench.config import NAME_LENGTHS, parse_suite
from segbench.errors import UserError
from segbench.suite import expand
from tests.test_spine import segbench

BASE = textwrap.dedent(
    """\
    name: bad
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 8, val_length: 2}
    models:
      - name: pspnet
        options: {backbone: resnet18, width: 0.25, output_stride: 8}
    variants:
      grid:
        ppm: [true, false]
    stages: [complexity, train, eval]
    train: {iterations: 2, batch_size: 2, lr: 0.01}
    measure: {input_size: [64, 64], iters: 10, min_iters: 3}
    report:
      columns: [mIoU, params]
      baseline: {ppm: false}
    """
)


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def nested(depth: int) -> str:
    return "description:\n" + "".join("  " * (i + 1) + "x:\n" for i in range(depth))


def bomb() -> str:
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return BASE + "x:\n" + "".join(f"  {line}\n" for line in levels)


#: (id, suite file content, regex the message must contain). Lines are BASE's 1-based lines.
CASES: list[tuple[str, str | bytes, str]] = [
    # --- types: a wrong value is never recorded as something else --------------------------
    (
        "quoted-false",
        edit("ppm: [true, false]", 'ppm: [true, "false"]'),
        r"bad.yaml:10: variants\[0\]\.grid\.ppm\[1\]: model 'pspnet' option 'ppm' must be of type bool, "
        r"got 'false' \(did you mean false, unquoted\?\)",
    ),
    ("quoted-on", edit("ppm: [true, false]", "ppm: [true, 'on']"), r"did you mean true, unquoted\?"),
    (
        "junk-bool-list",
        edit("ppm: [true, false]", "ppm: [yes_please, 3]"),
        r"bad.yaml:10: variants\[0\]\.grid\.ppm\[0\]: .*must be of type bool, got 'yes_please'",
    ),
    (
        "bool-as-int",
        edit("iterations: 2", "iterations: true"),
        r"bad.yaml:12: train\.iterations: Input should be a valid integer, got the boolean true",
    ),
    (
        "bool-as-int-in-grid",
        edit("ppm: [true, false]", "train.iterations: [2, true]"),
        r"bad.yaml:10: variants\[0\]\.grid\.train\.iterations\[1\]: train\.iterations: Input should be a valid int",
    ),
    (
        "quoted-int",
        edit("batch_size: 2", 'batch_size: "2"'),
        r"bad.yaml:12: train\.batch_size: .*\(did you mean 2, unquoted\?\)",
    ),
    (
        "choice-typo",
        edit("width: 0.25,", "width: 0.25, pooling: agv,"),
        r"bad.yaml:7: models\[0\]\.options\.pooling: .*is not one of 'avg', 'max' \(did you mean 'avg'\?\)",
    ),
    (
        "dataset-option-type",
        edit("size: 64", "size: 64.5"),
        r"bad.yaml:4: datasets\[0\]\.options\.size: dataset 'diagnostic' option 'size' must be of type int",
    ),
    (
        "plugin-option-not-json",
        edit(
            "  - name: pspnet\n    options: {backbone: resnet18, width: 0.25, output_stride: 8}",
            '  - name: "tests.tinymodels:tiny_segnet"\n    options: {width: !!binary aGk=}',
        ),
        r"bad.yaml:7: models\[0\]\.options\.width: a bytes is not plain data",
    ),
    (
        "duplicate-key",
        BASE + "stages: [complexity]\n",
        r"bad.yaml:17: not valid YAML: duplicate key 'stages' \(first at line 11, again at line 17\)",
    ),
    # --- YAML that used to exhaust memory or raise ----------------------------------------
    ("yaml-bomb", bomb(), r"bad.yaml:\d+: not valid YAML: aliases expand to more than 100,000 nodes"),
    (
        "recursive-alias",
        BASE + "x: &loop [1, *loop]\n",
        r"bad.yaml:17: .*alias \*loop refers to a node that contains it",
    ),
    ("deep-nesting", BASE + nested(80), r"bad.yaml:\d+: not valid YAML: nested more than 48 levels deep"),
    (
        "deep-flow-nesting",
        BASE + "x: " + "[" * 5000 + "]" * 5000 + "\n",
        r"bad.yaml:\d+: not valid YAML: .*nesting",
    ),
    ("not-utf8", BASE.encode() + b"description: caf\xe9\n", r"bad.yaml: not a UTF-8 text file"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", r"bad.yaml: not a UTF-8 text file"),
    ("nul-in-utf8", BASE + "description: a\x00b\n", r"bad.yaml: not a UTF-8 text file"),
    ("bad-tagged-int", BASE + "description: !!int zz\n", r"bad.yaml: not valid YAML: invalid literal"),
    # --- values that can never work -------------------------------------------------------
    (
        "zero-size",
        edit("input_size: [64, 64]", "input_size: [0, 0]"),
        r"bad.yaml:13: measure\.input_size\[0\]: Input should be greater than or equal to 1",
    ),
    (
        "negative-size",
        edit("input_size: [64, 64]", "input_size: [-64, 64]"),
        r"bad.yaml:13: measure\.input_size\[0\]",
    ),
    ("lr-inf", edit("lr: 0.01", "lr: .inf"), r"bad.yaml:12: train\.lr: inf is not a finite number"),
    ("lr-nan", edit("lr: 0.01", "lr: .nan"), r"bad.yaml:12: train\.lr: nan is not a finite number"),
    (
        "scale-range-inverted",
        edit("lr: 0.01}", "lr: 0.01, scale_range: [2.0, 0.5]}"),
        r"bad.yaml:12: train\.scale_range: .*low <= high",
    ),
    (
        "iters-below-min-iters",
        edit(
            "measure: {input_size: [64, 64], iters: 10, min_iters: 3}",
            "measure: {input_size: [64, 64], iters: 5}",
        ),
        r"bad.yaml:13: measure: .*min_iters=10 is larger than iters=5",
    ),
    (
        "iters-below-min-iters-in-grid",
        edit("ppm: [true, false]", "measure.iters: [10, 2]"),
        r"bad.yaml:10: variants\[0\]\.grid\.measure\.iters\[1\]: measure\.iters",
    ),
    (
        "sliding-window-gaps",
        BASE + "eval: {sliding_window: {crop: 32, stride: 48}}\n",
        r"bad.yaml:17: eval\.sliding_window: .*stride 48 is larger than crop 32",
    ),
    ("trimap-width-zero", BASE + "eval: {trimap_widths: [0]}\n", r"bad.yaml:17: eval\.trimap_widths\[0\]"),
    (
        "width-zero",
        edit("width: 0.25", "width: 0"),
        r"bad.yaml:7: models\[0\]\.options\.width: .*must be greater than 0",
    ),
    (
        "missing-weights",
        edit("width: 0.25,", "width: 0.25, weights: /nonexistent/resnet18.pth,"),
        r"bad.yaml:7: models\[0\]\.options\.weights: .*the file does not exist",
    ),
    (
        "missing-root",
        edit(
            "  - name: diagnostic\n    options: {size: 64, train_length: 8, val_length: 2}",
            "  - name: voc2012\n    root: /nonexistent/VOCdevkit",
        ),
        r"bad.yaml:4: datasets\[0\]\.root: dataset 'voc2012': root /nonexistent/VOCdevkit is not a directory",
    ),
    (
        "no-root-no-env",
        edit(
            "  - name: diagnostic\n    options: {size: 64, train_length: 8, val_length: 2}",
            "  - name: voc2012",
        ),
        r"bad.yaml:3: datasets\[0\]: dataset 'voc2012' reads its files from disk and no root was given",
    ),
    (
        "train-split-below-batch",
        edit("train_length: 8", "train_length: 1"),
        r"bad.yaml:12: train\.batch_size: dataset 'diagnostic' has 1 samples in split 'train', fewer than",
    ),
    (
        "eval-stride-without-stride",
        edit(
            "  - name: pspnet\n    options: {backbone: resnet18, width: 0.25, output_stride: 8}",
            "  - name: unet",
        )
        .replace("ppm: [true, false]", "padding: [true, false]")
        .replace("{ppm: false}", "{padding: false}")
        + "eval: {output_stride: 8}\n",
        r"bad.yaml:16: eval\.output_stride: 8: model 'unet' cannot change its output stride",
    ),
    # --- report and names -----------------------------------------------------------------
    (
        "unknown-column",
        edit("columns: [mIoU, params]", "columns: [mIoU, parms]"),
        r"bad.yaml:15: report\.columns\[1\]: unknown metric 'parms' \(did you mean 'params'\?\)",
    ),
    (
        "trimap-column-without-width",
        edit("columns: [mIoU, params]", "columns: [mIoU, trimap_miou@3]"),
        r"bad.yaml:15: report\.columns\[1\]: unknown metric 'trimap_miou@3'",
    ),
    (
        "baseline-no-row",
        edit("baseline: {ppm: false}", "baseline: {ppm: 3}"),
        r"bad.yaml:16: report\.baseline: no job has the factor values \{'ppm': 3\}",
    ),
    (
        "baseline-unknown-factor",
        edit("baseline: {ppm: false}", "baseline: {ppn: false}"),
        r"bad.yaml:16: report\.baseline\.ppn: 'ppn' is not a factor this suite varies \(did you mean 'ppm'\?\)",
    ),
    (
        "rows-unknown-factor",
        edit("  columns:", "  rows: [ppn]\n  columns:"),
        r"bad.yaml:15: report\.rows\[0\]: 'ppn' is not a factor this suite varies",
    ),
    (
        "long-suite-name",
        edit("name: bad", "name: " + "n" * 5000),
        r"bad.yaml:1: name: String should have at most 200 characters \(the results database",
    ),
    (
        "long-label",
        edit("    options: {backbone", f"    label: {'L' * 5000}\n    options: {{backbone"),
        r"bad.yaml:7: models\[0\]\.label: String should have at most 300 characters",
    ),
    (
        "long-variant-name",
        edit(
            "  grid:\n    ppm: [true, false]",
            f"  named:\n    - {{name: {'v' * 5000}, options: {{ppm: true}}}}",
        ),
        r"bad.yaml:10: variants\[0\]\.named\[0\]\.name: String should have at most 200 characters",
    ),
    # --- size -----------------------------------------------------------------------------
    (
        "job-cap",
        edit(
            "ppm: [true, false]",
            "width: [" + ", ".join(str(0.01 * (i + 1)) for i in range(100)) + "]\n"
            "    train.lr: [" + ", ".join(str(0.001 * (i + 1)) for i in range(101)) + "]",
        ),
        r"bad.yaml:8: variants: the suite expands to 10,100 jobs \(before exclusions\), more than the cap of "
        r"10,000; .*--max-jobs 10100",
    ),
    (
        "huge-file",
        BASE + "# " + "x" * (1 << 20) + "\n",
        r"bad.yaml: [\d,]+ bytes; a suite file is at most 1,048,576",
    ),
]


def run_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """``segbench ARGS`` through the console entry point; (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["segbench", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


@pytest.fixture
def no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGBENCH_DATA", raising=False)


@pytest.mark.parametrize(("content", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_suite_exits_2_with_where_and_records_nothing(
    content: str | bytes,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_data_env: None,
) -> None:
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "bad.yaml"
    suite.write_bytes(content if isinstance(content, bytes) else content.encode())
    db = tmp_path / "x.db"
    code, err = run_cli(["run", "bad.yaml", "--db", f"sqlite:///{db}"], monkeypatch, capsys)
    assert code == 2, err
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not db.exists()  # nothing recorded: the database is not even created
    assert not (tmp_path / "results").exists()


def test_the_base_suite_is_valid_so_each_case_tests_its_own_edit(tmp_path: Path) -> None:
    jobs = expand(parse_suite(BASE, tmp_path / "bad.yaml"))
    assert [job.model_options["ppm"] for job in jobs] == [True, False]


def test_what_is_still_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An int where a float is expected, unquoted booleans, a root from $SEGBENCH_DATA."""
    text = edit("lr: 0.01", "lr: 1, momentum: 0").replace("width: 0.25", "width: 1")
    jobs = expand(parse_suite(text, "ok.yaml"))
    assert jobs[0].train["lr"] == 1.0 and isinstance(jobs[0].train["lr"], float)
    assert jobs[0].model_options["width"] == 1
    (tmp_path / "voc2012").mkdir()
    monkeypatch.setenv("SEGBENCH_DATA", str(tmp_path))
    voc = edit(
        "  - name: diagnostic\n    options: {size: 64, train_length: 8, val_length: 2}", "  - name: voc2012"
    )
    assert {job.dataset_root for job in expand(parse_suite(voc, "voc.yaml"))} == {None}


def test_env_root_that_is_missing_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGBENCH_DATA", str(tmp_path))
    voc = edit(
        "  - name: diagnostic\n    options: {size: 64, train_length: 8, val_length: 2}", "  - name: voc2012"
    )
    with pytest.raises(
        Exception, match=r"voc.yaml:3: datasets\[0\]: .*\$SEGBENCH_DATA/voc2012 .* is not a directory"
    ):
        expand(parse_suite(voc, "voc.yaml"))


def test_max_jobs_option_raises_and_lowers_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(BASE)
    code, err = run_cli(["run", "s.yaml", "--dry-run", "--max-jobs", "1"], monkeypatch, capsys)
    assert code == 2 and "expands to 2 jobs (before exclusions), more than the cap of 1" in err
    monkeypatch.setattr(sys, "argv", ["segbench", "run", "s.yaml", "--dry-run", "--max-jobs", "2"])
    with pytest.raises(SystemExit) as ok:
        main()
    assert ok.value.code in (0, None)
    assert "bad: 2 job(s)" in capsys.readouterr().out


def test_name_lengths_are_the_database_columns() -> None:
    """config.NAME_LENGTHS (checked at load, without SQLAlchemy) must be the schema's column sizes."""
    from segbench.store import schema

    columns = {**schema.Run.__table__.columns, **schema.Job.__table__.columns}
    assert {name: columns[name].type.length for name in NAME_LENGTHS} == NAME_LENGTHS


@pytest.mark.parametrize("case", ["yaml-bomb", "binary"])
def test_a_real_process_prints_one_line_and_no_traceback(case: str, tmp_path: Path) -> None:
    content = next(c[1] for c in CASES if c[0] == case)
    (tmp_path / "bad.yaml").write_bytes(content if isinstance(content, bytes) else content.encode())
    proc = segbench("run", "bad.yaml", "--db", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: bad.yaml") and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_options_valid_alone_are_checked_together_per_row(tmp_path: Path) -> None:
    """A grid may pair options that only work together; a row that cannot be built is refused."""
    fcn = edit(
        "  - name: pspnet\n    options: {backbone: resnet18, width: 0.25, output_stride: 8}",
        "  - name: fcn\n    options: {variant: 32s}",
    ).replace("ppm: [true, false]", "backbone: [vgg16, resnet50]\n    output_stride: [32, 8]")
    fcn = fcn.replace("  baseline: {ppm: false}\n", "")
    excluded = fcn.replace(
        "output_stride: [32, 8]", "output_stride: [32, 8]\n  exclude: [{backbone: vgg16, output_stride: 8}]"
    )
    assert len(expand(parse_suite(excluded, "ok.yaml"))) == 3
    with pytest.raises(
        UserError, match=r"bad.yaml:8: model 'fcn': FCN on VGG16 has output stride 32 only, not 8"
    ):
        expand(parse_suite(fcn, "bad.yaml"))
    deeplab = edit("name: pspnet", "name: deeplabv3").replace(
        "ppm: [true, false]", "aspp_rates: [[6, 12, 18], [3, 6]]"
    )
    deeplab = deeplab.replace("{ppm: false}", "{aspp_rates: [3, 6]}").replace(
        "output_stride: 8}", "output_stride: 16}"
    )
    expand(parse_suite(deeplab, "ok.yaml"))  # rate 3 is fine at output stride 16 ...
    with pytest.raises(
        UserError, match=r"bad.yaml:17: eval\.output_stride: 32: model 'deeplabv3': ASPP rate 3 \(given"
    ):
        # ... but not when the trained model is evaluated at 32
        expand(parse_suite(deeplab + "eval: {output_stride: 32}\n", "bad.yaml"))
