"""Suite validation and expansion: errors name file, line and field; keys are stable."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from segbench.config import load_suite, parse_suite
from segbench.errors import UserError
from segbench.suite import expand, select, varied_factors

TINY = "tests.tinymodels:tiny_segnet"


def suite_text(body: str) -> str:
    return textwrap.dedent(body).strip() + "\n"


BASE = suite_text(
    f"""
    name: t
    datasets:
      - name: diagnostic
        options: {{size: 64, train_length: 16, val_length: 4}}
    models:
      - name: "{TINY}"
    variants:
      grid:
        width: [4, 8]
        eval.flip: [false, true]
    stages: [complexity, train, eval]
    train: {{iterations: 2, batch_size: 2}}
    """
)


def test_unknown_field_names_line_and_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace("train: {iterations: 2", "train: {iteratons: 2"))
    with pytest.raises(UserError) as err:
        load_suite(path)
    msg = str(err.value)
    assert f"{path}:12" in msg
    assert "train.iteratons" in msg
    assert "did you mean 'iterations'" in msg


def test_unknown_top_level_field_suggests(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match=r"s.yaml:2: modles: unknown field 'modles' \(did you mean 'models'\?\)"
    ):
        parse_suite("name: t\nmodles: []\ndatasets: []\n", tmp_path / "s.yaml")


def test_unknown_field_in_a_list_entry_suggests_from_that_entrys_fields(tmp_path: Path) -> None:
    text = (
        "name: t\ndatasets:\n  - name: diagnostic\n    optoins: {}\nmodels:\n  - name: fcn\n"
        "variants:\n  - name: broken\n    grid: {width: [4]}\n"
    )
    with pytest.raises(UserError) as err:
        parse_suite(text, tmp_path / "s.yaml")
    msg = str(err.value)
    assert "s.yaml:4: datasets[0].optoins: unknown field 'optoins' (did you mean 'options'?)" in msg
    # a variant block has `named` variants; its own fields, not the suite's, are the candidates
    assert "s.yaml:8: variants[0].name: unknown field 'name' (did you mean 'named'?)" in msg


def test_bad_value_points_at_its_line() -> None:
    text = BASE.replace("batch_size: 2", "batch_size: 0")
    with pytest.raises(
        UserError, match=r"x.yaml:12: train.batch_size: Input should be greater than or equal to 1"
    ):
        parse_suite(text, "x.yaml")


def test_invalid_yaml_names_line() -> None:
    with pytest.raises(UserError, match=r"y.yaml:2: not valid YAML"):
        parse_suite("name: t\n\tdatasets: []\n", "y.yaml")


def test_unknown_model_suggests_closest() -> None:
    loaded = parse_suite(BASE.replace(f'"{TINY}"', "pspnett"), "z.yaml")
    with pytest.raises(UserError, match=r"unknown model 'pspnett' \(did you mean 'pspnet'\?\)"):
        expand(loaded)


def test_unknown_model_option_points_at_the_options_line() -> None:
    text = BASE.replace(f'- name: "{TINY}"', "- name: pspnet\n    options: {ppn: true}")
    loaded = parse_suite(text, "m.yaml")
    with pytest.raises(
        UserError,
        match=r"m.yaml:7: models\[0\].options.ppn: model 'pspnet' has no option 'ppn' \(did you mean 'ppm'\?\)",
    ):
        expand(loaded)


def test_grid_factor_on_missing_setting_points_at_block() -> None:
    loaded = parse_suite(BASE.replace("eval.flip", "eval.flipp"), "g.yaml")
    with pytest.raises(
        UserError, match=r"g.yaml:10: .*eval has no setting 'flipp' \(did you mean 'flip'\?\)"
    ):
        expand(loaded)


def test_split_the_dataset_lacks_fails_at_load_with_a_suggestion() -> None:
    loaded = parse_suite(
        BASE.replace("train: {iterations: 2", "train: {split: trian, iterations: 2"), "p.yaml"
    )
    with pytest.raises(
        UserError, match=r"p.yaml:12: .*has no split 'trian' \(did you mean 'train'\?\); splits: train, val"
    ):
        expand(loaded)
    jobs = expand(
        parse_suite(
            BASE.replace(
                "stages: [complexity, train, eval]", "stages: [complexity, train, eval]\neval: {split: train}"
            ),
            "q.yaml",
        )
    )
    assert {job.eval["split"] for job in jobs} == {"train"} and {job.train["split"] for job in jobs} == {
        "train"
    }


def test_eval_without_train_is_rejected() -> None:
    with pytest.raises(UserError, match="stage 'eval' needs stage 'train'"):
        parse_suite(BASE.replace("[complexity, train, eval]", "[complexity, eval]"), "e.yaml")


def test_expansion_grid_named_exclude_seeds() -> None:
    text = suite_text(
        f"""
        name: t
        datasets: [{{name: diagnostic, options: {{size: 64}}}}]
        models: [{{name: "{TINY}"}}]
        variants:
          - block: widths
            grid: {{width: [4, 8, 16]}}
            exclude: [{{width: 16}}]
          - block: named
            named:
              - {{name: wide, options: {{width: 32}}}}
              - {{name: flip, options: {{width: 4, eval.flip: true}}}}
        stages: [complexity, train, eval]
        seeds: [0, 1]
        """
    )
    jobs = expand(parse_suite(text, "t.yaml"))
    assert len(jobs) == (2 + 2) * 2
    assert [j.block for j in jobs[:4]] == ["widths"] * 4
    assert {j.variant for j in jobs[4:]} == {"wide", "flip"}
    assert varied_factors(jobs) == ["width", "eval.flip"]
    flip = next(j for j in jobs if j.variant == "flip")
    assert flip.eval["flip"] is True and flip.model_options == {"width": 4}


def test_job_keys_stable_and_train_key_shared_by_eval_factors() -> None:
    a = expand(parse_suite(BASE, "a.yaml"))
    b = expand(parse_suite(BASE, "b.yaml"))
    assert [j.job_key for j in a] == [j.job_key for j in b]
    assert len({j.job_key for j in a}) == 4
    # eval.flip does not change training: two jobs per trained checkpoint
    by_train: dict[str, int] = {}
    for job in a:
        by_train[job.train_key] = by_train.get(job.train_key, 0) + 1
    assert sorted(by_train.values()) == [2, 2]
    # a training setting does change both keys
    c = expand(parse_suite(BASE.replace("iterations: 2", "iterations: 3"), "c.yaml"))
    assert not {j.job_key for j in a} & {j.job_key for j in c}
    assert not {j.train_key for j in a} & {j.train_key for j in c}


def test_select_by_substring_and_glob() -> None:
    jobs = expand(parse_suite(BASE, "a.yaml"))
    assert len(select(jobs, "width=8")) == 2
    assert len(select(jobs, "*eval.flip=True*")) == 2
    assert select(jobs, None) == jobs


def test_duplicate_rows_rejected() -> None:
    text = BASE.replace("width: [4, 8]", "width: [4, 4]")
    with pytest.raises(UserError, match="appears twice"):
        expand(parse_suite(text, "d.yaml"))


def test_shipped_suites_validate() -> None:
    for path in sorted(Path("suites").glob("*.yaml")):
        assert expand(load_suite(path)), path
