"""FCN: the paper's VGG16 nets (variants, pad-100 crops, parameter count) and FCN on torchvision's ResNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.segmentation import fcn_resnet50

from segbench.errors import UserError
from segbench.models import build_model
from segbench.models.fcn import bilinear_kernel

TINY = {"width": 1 / 16}  # VGG16 at 4..32 channels, fc6/fc7 256 wide


pytestmark = pytest.mark.usefixtures("one_thread")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_fcn8s_vgg16_has_the_official_caffe_parameter_count() -> None:
    # 14,714,688 (VGG16 convs) + fc6 102,764,544 + fc7 16,781,312 + score_fr/pool4/pool3 102,207
    # + deconvs 21*21*(4*4 + 4*4 + 16*16) = 127,008: the blobs of voc-fcn8s.
    with torch.device("meta"):
        fcn8s = build_model("fcn", num_classes=21)
        fcn16s = build_model("fcn", num_classes=21, variant="16s")
        fcn32s = build_model("fcn", num_classes=21, variant="32s")
    assert _params(fcn8s) == 134_489_759
    # 16s: no pool3 skip (5,397 + 7,056) and a 32x32 instead of 16x16 final deconv.
    assert _params(fcn16s) == 134_489_759 - 5_397 - 7_056 + 21 * 21 * (32 * 32 - 16 * 16)
    # 32s: no skips at all and the 64x64 bilinear deconv.
    assert _params(fcn32s) == 134_489_759 - 5_397 - 10_773 - 2 * 7_056 + 21 * 21 * (64 * 64 - 16 * 16)


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_variant_adds_the_skip_score_layers(variant: str) -> None:
    model = build_model("fcn", num_classes=5, variant=variant, **TINY)
    names = {name for name, _ in model.named_parameters()}
    skips = {
        "32s": set(),
        "16s": {"score_pool4", "upscore2"},
        "8s": {"score_pool4", "upscore2", "score_pool3", "upscore_pool4"},
    }
    present = {name.split(".")[0] for name in names} & {
        "score_pool4",
        "upscore2",
        "score_pool3",
        "upscore_pool4",
    }
    assert present == skips[variant]
    assert model.upscore.kernel_size == {"32s": (64, 64), "16s": (32, 32), "8s": (16, 16)}[variant]
    if variant == "8s":  # the skips score pool4 (stage 4) and pool3 (stage 3) features
        assert model.score_pool4.in_channels == 32 and model.score_pool3.in_channels == 16


@pytest.mark.parametrize("pad100", [True, False])
@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_logits_come_at_the_input_resolution_for_any_size(variant: str, pad100: bool) -> None:
    model = build_model("fcn", num_classes=3, variant=variant, pad100=pad100, **TINY).eval()
    for size in [(1, 5), (37, 50), (64, 64)]:
        out = model(torch.randn(1, 3, *size))
        assert set(out) == {"out"} and out["out"].shape == (1, 3, *size)


def _as_impulse_tracker(model: nn.Module) -> nn.Module:
    """Every layer passes channel 0 through its centre tap: the net becomes max-pooling + upsampling."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.zero_()
                module.bias.zero_()
                k = module.kernel_size[0] // 2
                module.weight[0, 0, k, k] = 1.0
    return model.eval()  # the deconvolutions are bilinear as built


def _cell_centre(pixel: int, stride: int, pad100: bool) -> float:
    """Centre, in input pixels, of the stride-``stride`` pooling cell that holds ``pixel``.

    conv1_1 output ``i`` is input pixel ``i - 99`` with the 100-pixel padding (``i`` without),
    and every 2x2 pooling pairs cells from there.
    """
    shift = 99 if pad100 else 0
    return stride * ((pixel + shift) // stride) - shift + (stride - 1) / 2


@pytest.mark.parametrize("pad100", [True, False])
@pytest.mark.parametrize(
    ("variant", "path", "stride"),
    [
        ("32s", "score_fr", 32),
        ("16s", "score_fr", 32),
        ("16s", "score_pool4", 16),
        ("8s", "score_fr", 32),
        ("8s", "score_pool4", 16),
        ("8s", "score_pool3", 8),
    ],
)
def test_every_path_keeps_predictions_on_the_input_grid(
    variant: str, path: str, stride: int, pad100: bool
) -> None:
    # Through one path alone, an impulse comes out as a symmetric bump centred on the pooling
    # cell that holds it; a crop offset one cell (or, for the final crop, one pixel) off moves it.
    model = _as_impulse_tracker(build_model("fcn", num_classes=2, variant=variant, pad100=pad100, **TINY))
    with torch.no_grad():
        for other in {"score_fr", "score_pool4", "score_pool3"} - {path}:
            if getattr(model, other) is not None:
                getattr(model, other).weight.zero_()
    for row, col in [(85, 101), (107, 83)]:
        x = torch.zeros(1, 3, 192, 192)
        x[0, 0, row, col] = 1.0
        with torch.no_grad():
            logits = model(x)["out"][0, 0]
        mass = logits.sum()
        centre = (
            float((logits.sum(1) * torch.arange(192.0)).sum() / mass),
            float((logits.sum(0) * torch.arange(192.0)).sum() / mass),
        )
        expected = (_cell_centre(row, stride, pad100), _cell_centre(col, stride, pad100))
        assert centre == pytest.approx(expected, abs=0.01)


def test_skip_scores_reach_the_output() -> None:
    model = build_model("fcn", num_classes=3, variant="8s", pad100=True, **TINY).eval()
    x = torch.randn(1, 3, 40, 40)
    before = model(x)["out"]
    with torch.no_grad():
        model.score_pool3.bias[1] = 1.0  # the score layers start at zero, as in the paper
    after = model(x)["out"]
    assert torch.allclose(after[:, 0], before[:, 0]) and (after[:, 1] - before[:, 1]).abs().min() > 0.5


def test_upsampling_is_bilinear_and_learned_or_fixed() -> None:
    learned = build_model("fcn", num_classes=2, variant="8s", pad100=False, **TINY)
    fixed = build_model("fcn", num_classes=2, variant="8s", pad100=False, upsampling="fixed", **TINY)
    assert learned.upscore2.weight.requires_grad and learned.upscore_pool4.weight.requires_grad
    assert not learned.upscore.weight.requires_grad  # the paper keeps the final upsampling bilinear
    assert not any(m.weight.requires_grad for m in (fixed.upscore2, fixed.upscore_pool4, fixed.upscore))
    assert torch.equal(fixed.upscore.weight, bilinear_kernel(2, 16))
    # A fresh deconvolution is per-class bilinear interpolation: a ramp stays a ramp.
    ramp = torch.arange(8.0).repeat(8, 1)[None, None].repeat(1, 2, 1, 1)
    up = learned.upscore2(ramp)
    assert torch.allclose(up[0, 1, 4, 2:-2], torch.arange(0.75, 6.5, 0.5))
    assert torch.equal(up[0, 0], up[0, 1])


def test_channels_last_gives_the_same_logits() -> None:
    model = build_model("fcn", num_classes=3, **TINY).eval()
    with torch.no_grad():
        model.score_pool3.bias.fill_(0.3)
    x = torch.randn(2, 3, 33, 41)
    expected = model(x)["out"]
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))["out"]
    assert torch.allclose(out, expected, atol=1e-5)


def test_weights_load_from_a_local_checkpoint(tmp_path: Path) -> None:
    source = build_model("fcn", num_classes=4, variant="16s", **TINY).eval()
    with torch.no_grad():
        source.score_pool4.weight.normal_()
    # a DataParallel-era training checkpoint: {"model": {"module.<key>": tensor}, "epoch": ...}
    path = tmp_path / "fcn16s.pth"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    loaded = build_model("fcn", num_classes=4, variant="16s", weights=str(path), **TINY).eval()
    x = torch.randn(1, 3, 36, 36)
    assert torch.equal(loaded(x)["out"], source(x)["out"])
    with pytest.raises(UserError, match="does not fit this model"):
        build_model("fcn", num_classes=4, variant="8s", weights=str(path), **TINY)
    with pytest.raises(UserError, match="does not exist"):
        build_model("fcn", num_classes=4, weights=str(tmp_path / "missing.pth"), **TINY)


def test_resnet50_32s_at_output_stride_8_is_torchvisions_fcn(tmp_path: Path) -> None:
    reference = fcn_resnet50(weights=None, weights_backbone=None, num_classes=3, aux_loss=True).eval()
    path = tmp_path / "fcn_resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = build_model(
        "fcn", num_classes=3, backbone="resnet50", variant="32s", output_stride=8, aux=True, weights=str(path)
    ).eval()
    x = torch.randn(1, 3, 40, 48)
    out = model(x)
    assert set(out) == {"out"}  # no aux outside training
    assert torch.allclose(out["out"], reference(x)["out"], atol=1e-5)
    model.train()
    out = model(torch.randn(2, 3, 40, 48))
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 3, 40, 48)


def test_set_output_stride_re_dilates_like_torchvision_and_keeps_the_weights() -> None:
    model = build_model("fcn", num_classes=3, backbone="resnet50", variant="32s", output_stride=32).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    for output_stride, dilation in [(8, [False, True, True]), (16, [False, False, True]), (32, [False] * 3)]:
        model.set_output_stride(output_stride)
        assert model.output_stride == output_stride
        with torch.device("meta"):
            fresh = resnet50(weights=None, replace_stride_with_dilation=dilation)
        geometry = {
            n: (m.stride, m.dilation, m.padding) for n, m in fresh.named_modules() if isinstance(m, nn.Conv2d)
        }
        ours = {
            n.removeprefix("backbone."): (m.stride, m.dilation, m.padding)
            for n, m in model.named_modules()
            if n.startswith("backbone.") and isinstance(m, nn.Conv2d)
        }
        assert ours == geometry
        features = model.backbone(x)["layer4"]
        assert features.shape[-1] == 64 // output_stride
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_resnet_skips_fuse_layer3_and_layer2_at_output_stride_32() -> None:
    model = build_model("fcn", num_classes=2, backbone="resnet50", variant="8s", aux=True)
    assert model.score_pool4.in_channels == 1024 and model.score_pool3.in_channels == 512
    out = model.train()(torch.randn(2, 3, 45, 70))
    assert out["out"].shape == (2, 2, 45, 70) and out["aux"].shape == (2, 2, 45, 70)
    with pytest.raises(UserError, match="output_stride 32"):
        model.set_output_stride(8)
    assert model.output_stride == 32


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aux": True}, "no auxiliary head"),
        ({"output_stride": 8}, "output stride 32 only"),
        ({"backbone": "resnet50", "variant": "16s", "output_stride": 16}, "undilated ResNet"),
        ({"backbone": "resnet50", "width": 0.5}, "fixed widths"),
        ({"backbone": "resnet101", "pad100": True}, "VGG16"),
        ({"variant": "4s"}, "is not one of"),
        ({"backbone": "resnet18"}, "is not one of"),
        ({"varaint": "8s"}, "did you mean 'variant'"),
        ({"width": 0}, "option .width. = 0 must be greater than 0"),
    ],
)
def test_bad_options_are_user_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_model("fcn", num_classes=3, **options)


def test_vgg16_accepts_only_output_stride_32() -> None:
    model = build_model("fcn", num_classes=3, **TINY)
    model.set_output_stride(32)
    assert model.output_stride == 32
    with pytest.raises(UserError, match="output stride 32 only"):
        model.set_output_stride(16)


def test_vgg16_from_scratch_keeps_its_activations_alive() -> None:
    """He init through the 13 convs and fc6/fc7: with PyTorch's default they fade ~20x by fc7."""
    torch.manual_seed(0)
    model = build_model("fcn", num_classes=7, variant="32s", **TINY).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for stage in model.features:
            x = stage(x)
        pool5 = x.std().item()
        fc7 = model.relu7(model.fc7(model.relu6(model.fc6(x)))).std().item()
    assert pool5 > 0.1 and fc7 > 0.05, (pool5, fc7)
