"""FLOP counting: torchvision's published numbers, the aux head in and out, uncounted operators."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation import FCN_ResNet50_Weights, fcn_resnet50

from segbench.errors import UserError
from segbench.measure import FlopCount, count_flops, count_inference_flops

PUBLISHED_SHAPE = (1, 3, 520, 520)


@torch.library.custom_op("segbench_test::scramble", mutates_args=())
def scramble(x: torch.Tensor) -> torch.Tensor:
    """An operator fvcore has never heard of."""
    return x.flip(1)


@scramble.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@pytest.fixture(scope="module")
def fcn() -> nn.Module:
    """torchvision's FCN-ResNet50 with its aux head, as its published weights are (no download)."""
    return fcn_resnet50(weights=None, weights_backbone=None, aux_loss=True, num_classes=21)


@pytest.fixture(scope="module")
def fcn_counts(fcn: nn.Module) -> dict[str, object]:
    """Both counts, taken once, with the model in train mode to check it comes back that way."""
    fcn.train()
    buffers = {name: b.clone() for name, b in fcn.named_buffers()}
    head = fcn.aux_classifier
    with_aux = count_flops(fcn, PUBLISHED_SHAPE, include_aux=True)
    without_aux = count_flops(fcn, PUBLISHED_SHAPE, include_aux=False)
    return {"with": with_aux, "without": without_aux, "buffers": buffers, "head": head}


def test_conv_macs_match_torchvision_published_ops(fcn_counts: dict[str, FlopCount]) -> None:
    published_gflops = FCN_ResNet50_Weights.DEFAULT.meta["_ops"]
    macs = fcn_counts["with"].macs
    assert abs(macs / 1e9 - published_gflops) / published_gflops < 1e-3
    assert fcn_counts["with"].fvcore_total > macs  # norms and upsampling on top
    assert set(fcn_counts["with"].by_operator) >= {"conv", "batch_norm", "upsample_bilinear2d"}


def test_without_aux_drops_by_exactly_the_aux_share(fcn_counts: dict[str, FlopCount]) -> None:
    with_aux, without_aux = fcn_counts["with"], fcn_counts["without"]
    assert with_aux.aux_counted and not without_aux.aux_counted
    aux_share = with_aux.by_module["aux_classifier"]
    assert aux_share > 0
    assert with_aux.macs - without_aux.macs == aux_share
    assert "aux_classifier" not in without_aux.by_module
    # Everything else is the same network.
    for name in ("backbone", "classifier"):
        assert with_aux.by_module[name] == without_aux.by_module[name]


def test_by_module_breaks_down_the_total(fcn_counts: dict[str, FlopCount]) -> None:
    counts = fcn_counts["with"]
    top = [name for name in counts.by_module if "." not in name]
    assert top == ["backbone", "classifier", "aux_classifier"]
    assert sum(counts.by_module[name] for name in top) == counts.macs
    layers = [f"backbone.layer{i}" for i in range(1, 5)]
    assert all(counts.by_module[name] > 0 for name in layers)
    assert (
        sum(counts.by_module[n] for n in layers) + counts.by_module["backbone.conv1"]
        == (counts.by_module["backbone"])
    )
    assert counts.total_by_module["backbone"] >= counts.by_module["backbone"]


def test_uncounted_operators_of_a_real_model_are_listed(fcn_counts: dict[str, FlopCount]) -> None:
    # fvcore has no formula for max pooling or the residual additions of ResNet.
    assert fcn_counts["with"].uncounted == {"aten::add_": 16, "aten::max_pool2d": 1}


def test_counting_leaves_the_model_as_it_was(fcn: nn.Module, fcn_counts: dict[str, object]) -> None:
    assert fcn.training and all(m.training for m in fcn.modules())
    assert fcn.aux_classifier is fcn_counts["head"]
    for name, buffer in fcn.named_buffers():
        assert torch.equal(buffer, fcn_counts["buffers"][name]), name


class TrainOnlyAux(nn.Module):
    """segbench's convention: the aux head runs only while training."""

    def __init__(self, classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.classifier = nn.Conv2d(width, classes, 1)
        self.aux_classifier = nn.Sequential(nn.Dropout2d(0.5), nn.Conv2d(width, classes, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)
        out = {"out": self.classifier(feats)}
        if self.training and self.aux_classifier is not None:
            out["aux"] = self.aux_classifier(feats)
        return out


def test_training_only_aux_head_is_counted_exactly_when_asked() -> None:
    model = TrainOnlyAux(classes=5, width=8)
    h = w = 16
    stem, head = 8 * 3 * 9 * h * w, 5 * 8 * h * w
    excluded = count_flops(model, (1, 3, h, w), include_aux=False)
    assert excluded.macs == stem + head
    assert list(excluded.by_module) == ["features", "features.0", "features.1", "classifier"]
    counted = count_flops(model, (1, 3, h, w), include_aux=True)
    assert counted.macs == stem + 2 * head
    assert counted.by_module["aux_classifier"] == head
    assert counted.aux_counted


def test_aux_mode_disturbs_neither_statistics_nor_modes_nor_rng() -> None:
    model = TrainOnlyAux()
    model.train()
    model.features.eval()  # a frozen part: mixed modes must come back as they were
    flags = [m.training for m in model.modules()]
    stats = {name: b.clone() for name, b in model.named_buffers()}
    rng = torch.get_rng_state()
    count_flops(model, (2, 3, 16, 16), include_aux=True)
    assert [m.training for m in model.modules()] == flags
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, stats[name]), name
    assert torch.equal(torch.get_rng_state(), rng)


def test_model_without_aux_head_counts_the_same_either_way() -> None:
    model = TrainOnlyAux()
    model.aux_classifier = None
    with_flag = count_flops(model, (1, 3, 8, 8), include_aux=True)
    assert with_flag.macs == count_flops(model, (1, 3, 8, 8)).macs
    assert not with_flag.aux_counted


def test_aux_head_that_never_runs_cannot_be_counted() -> None:
    class DeadAux(TrainOnlyAux):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": self.classifier(self.features(x))}

    with pytest.raises(UserError, match="aux_classifier ran neither"):
        count_flops(DeadAux(), (1, 3, 8, 8), include_aux=True)


class Uncountable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = scramble(self.conv(x))
        return {"out": torch.cumsum(torch.cumsum(y, dim=2), dim=3)}


def test_operators_fvcore_cannot_count_are_listed_not_dropped() -> None:
    counts = count_flops(Uncountable(), (1, 3, 8, 8))
    assert counts.uncounted["segbench_test::scramble"] == 1
    assert counts.uncounted["aten::cumsum"] == 2
    assert counts.macs == 4 * 3 * 8 * 8
    assert json.loads(json.dumps(counts.to_dict()))["uncounted"] == counts.uncounted


def test_eval_mode_dropout_is_free_not_uncounted() -> None:
    """PSPNet's head has Dropout2d: the identity at inference, so neither a cost nor a gap."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Dropout2d(0.1), nn.Dropout(0.1), nn.AlphaDropout(0.1))
    model.train()  # the caller's mode must not matter
    counts = count_flops(model, (1, 3, 8, 8))
    assert counts.uncounted == {}
    assert counts.macs == 4 * 3 * 8 * 8


class MatmulNet(nn.Module):
    """Linear, matmul, einsum and a transposed conv: all multiply-adds."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 2, stride=2)
        self.proj = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.up(x)  # [1, 4, 2h, 2w]
        tokens = self.proj(y.flatten(2).transpose(1, 2))  # [1, L, 6]
        attn = tokens @ tokens.transpose(1, 2)  # [1, L, L]
        # An equation fvcore counts exactly (others go through numpy's estimate, off by one).
        mixed = torch.einsum("bml,bmc->blc", attn, tokens)  # [1, L, 6]
        logits = mixed.transpose(1, 2).reshape(1, 6, *y.shape[-2:])  # shape ops are free
        return {"out": F.relu(logits)}


def test_linear_matmul_einsum_and_transposed_conv_are_multiply_adds() -> None:
    h = w = 4
    tokens = 2 * h * 2 * w
    expected = {
        "conv": 3 * 4 * 2 * 2 * h * w,  # each input pixel scatters a 2×2 kernel to 4 channels
        "linear": tokens * 4 * 6,
        "matmul": tokens * tokens * 6,
        "einsum": tokens * tokens * 6,
    }
    counts = count_flops(MatmulNet(), (1, 3, h, w))
    assert {op: counts.by_operator[op] for op in expected} == expected
    assert counts.macs == sum(expected.values())


def test_multi_scale_flip_inference_sums_every_view() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1))  # multiply-adds are exactly 12 per pixel

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = model

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": self.body(x)}

    net = Wrapped()
    scales = (0.5, 0.75, 1.0, 1.25)
    sizes = [(int(30 * s + 0.5), int(20 * s + 0.5)) for s in scales]
    single = sum(12 * h * w for h, w in sizes)
    assert count_inference_flops(net, (1, 3, 30, 20), scales=scales, flip=False) == single
    assert count_inference_flops(net, (1, 3, 30, 20), scales=scales, flip=True) == 2 * single
    assert count_inference_flops(net, (1, 3, 30, 20)) == count_flops(net, (1, 3, 30, 20)).macs
    with pytest.raises(UserError, match="scales"):
        count_inference_flops(net, (1, 3, 30, 20), scales=(1.0, -0.5))


def test_transposed_input_shape_is_refused() -> None:
    with pytest.raises(UserError, match=r"did you mean \(1, 3, 520, 520\)"):
        count_flops(TrainOnlyAux(), (1, 520, 520, 3))
