"""Your own models, end to end through ``segbench run``: what users bring, straight from YAML.

A plain ``nn.Sequential`` (tensor at 1/2 size), segmentation_models_pytorch's
Unet / DeepLabV3Plus / PSPNet with ``aux_params`` (tuple with 2-D labels),
transformers' SegFormer built from its config (output object, logits at 1/4)
and torchvision's LR-ASPP (dict) run every stage in one suite; a one-channel
sigmoid model on Figaro-1k's layout runs a threshold grid off one checkpoint.
Real worker processes and a real SQLite file; every model random-init, tiny.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest

from tests.test_data_layouts import make_figaro
from tests.test_spine import db_rows, segbench

pytest.importorskip("segmentation_models_pytorch")
pytest.importorskip("transformers")

THIRD_PARTY = textwrap.dedent(
    """
    name: openworld
    datasets:
      - name: diagnostic
        options: {size: 64, train_length: 4, val_length: 2}
    models:
      - name: tests.openworld_models:sequential
        label: sequential
      - name: segmentation_models_pytorch:Unet
        label: smp-unet
        options: {encoder_name: tu-resnet10t, encoder_weights: null, encoder_depth: 3, decoder_channels: [16, 8, 8]}
      - name: segmentation_models_pytorch:DeepLabV3Plus
        label: smp-deeplabv3plus
        options: {encoder_name: tu-mobilenetv3_small_050, encoder_weights: null, decoder_channels: 16}
      - name: segmentation_models_pytorch:PSPNet
        label: smp-pspnet
        options:
          encoder_name: tu-resnet10t
          encoder_weights: null
          psp_out_channels: 16
          aux_params: {classes: 7}
      - name: transformers:SegformerForSemanticSegmentation
        label: segformer
        options:
          hidden_sizes: [8, 16, 16, 16]
          depths: [1, 1, 1, 1]
          num_attention_heads: [1, 1, 1, 1]
          mlp_ratios: [2, 2, 2, 2]
          decoder_hidden_size: 16
      - name: torchvision.models.segmentation:lraspp_mobilenet_v3_large
        label: tv-lraspp
        options: {weights: null, weights_backbone: null}
    stages: [complexity, latency, train, eval]
    train: {iterations: 2, batch_size: 2, aux_weight: null}
    eval: {batch_size: 2, scales: [0.75, 1.0], flip: true}
    measure: {input_size: [64, 64], warmup: 1, iters: 3, min_iters: 3}
    """
)

BINARY = textwrap.dedent(
    """
    name: binary
    datasets:
      - name: figaro1k
        root: {root}
    models:
      - name: tests.openworld_models:binary
        label: sigmoid
    variants:
      grid:
        eval.threshold: [0.3, 0.5, 0.7]
    stages: [complexity, latency, train, eval]
    train: {{iterations: 3, batch_size: 2, aux_weight: null, crop_size: 8}}
    eval: {{batch_size: 1, flip: true, scales: [0.5, 1.0], sliding_window: {{crop: 8, stride: 6}}}}
    measure: {{input_size: [32, 32], warmup: 1, iters: 3, min_iters: 3}}
    """
)


def _metrics(db: Path, job_id: int) -> dict[str, float | None]:
    return dict(db_rows(db, f"select name, value from metrics where job_id = {job_id}"))


@pytest.mark.slow
def test_third_party_models_run_every_stage_from_yaml(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(THIRD_PARTY)
    out = segbench("run", "suite.yaml", "--devices", "cpu", cwd=tmp_path, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    db = tmp_path / "results" / "segbench.db"
    jobs = db_rows(db, "select id, model_label, status, error from jobs order by id")
    assert [(label, status, error) for _, label, status, error in jobs] == [
        (label, "done", None)
        for label in ("sequential", "smp-unet", "smp-deeplabv3plus", "smp-pspnet", "segformer", "tv-lraspp")
    ]
    for job_id, label, _, _ in jobs:
        m = _metrics(db, job_id)
        assert m["macs"] and m["macs"] > 0, label
        assert m["macs_inference"] and m["macs_inference"] > m["macs"], label  # 2 scales × flip
        assert m["latency_ms"] and m["latency_ms"] > 0, label
        assert m["peak_memory_bytes"] is not None and m["train_peak_memory_bytes"], label
        assert math.isfinite(m["train_loss_final"]), label
        assert 0.0 <= m["mIoU"] <= 1.0 and math.isfinite(m["val_loss"]), label
        assert "fg_iou" not in m  # seven classes: no foreground metrics
    per_class = db_rows(db, "select samples from metrics where job_id = 5 and name = 'per_class_iou'")[0][0]
    assert len(json.loads(per_class)) == 7  # SegFormer's 1/4-size logits were scored at full size


@pytest.mark.slow
def test_binary_sigmoid_model_grids_the_threshold_on_one_checkpoint(tmp_path: Path) -> None:
    root = make_figaro(tmp_path)
    (tmp_path / "suite.yaml").write_text(BINARY.format(root=root))
    out = segbench("run", "suite.yaml", "--devices", "cpu", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    db = tmp_path / "results" / "segbench.db"
    jobs = db_rows(db, "select id, status, train_key, factors from jobs order by id")
    assert [j[1] for j in jobs] == ["done"] * 3
    assert len({j[2] for j in jobs}) == 1  # evaluation-only factor: one train key
    thresholds = [json.loads(j[3])["eval.threshold"] for j in jobs]
    assert thresholds == [0.3, 0.5, 0.7]
    resumed = [
        json.loads(
            db_rows(db, f"select extra from metrics where job_id = {j[0]} and name = 'train_seconds'")[0][0]
        )["resumed_from"]
        for j in jobs
    ]
    assert resumed == [0, 3, 3]  # the first trains, the others load its finished checkpoint
    recalls = []
    for job_id, *_ in jobs:
        m = _metrics(db, job_id)
        assert {"fg_iou", "fg_f1", "fg_precision", "fg_recall", "mIoU"} <= set(m)
        assert math.isfinite(m["val_loss"]) and math.isfinite(m["train_loss_final"])
        recalls.append(m["fg_recall"])
    # the same probabilities cut at a higher threshold never find more foreground
    assert recalls[0] >= recalls[1] >= recalls[2]


def test_a_threshold_on_a_multi_class_dataset_is_refused_at_load_time(tmp_path: Path) -> None:
    suite = THIRD_PARTY.replace("eval: {batch_size: 2,", "eval: {batch_size: 2, threshold: 0.4,")
    (tmp_path / "suite.yaml").write_text(suite)
    out = segbench("run", "suite.yaml", "--devices", "cpu", "--dry-run", cwd=tmp_path)
    assert out.returncode == 2
    assert "suite.yaml:" in out.stderr and "eval.threshold=0.4 is for a binary task" in out.stderr
    assert "'diagnostic' has 7 classes" in out.stderr


def test_the_threshold_keys_only_the_jobs_that_set_it(tmp_path: Path) -> None:
    from segbench.config import parse_suite
    from segbench.suite import expand

    plain = expand(parse_suite(THIRD_PARTY))[0]
    assert plain.eval["threshold"] is None and "threshold" not in plain.experiment()["eval"]
    graded = expand(parse_suite(BINARY.format(root=tmp_path)))
    assert len({job.job_key for job in graded}) == 3 and len({job.train_key for job in graded}) == 1
    assert [job.experiment()["eval"]["threshold"] for job in graded] == [0.3, 0.5, 0.7]
