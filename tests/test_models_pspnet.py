"""PSPNet: the quickstart model, Table 1's PPM ablations, aux head, strides, weights, errors."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from segbench.errors import UserError
from segbench.models import build_model, get_entry
from segbench.models.pspnet import PyramidPooling, build_pspnet


def n_params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def tiny(**options: object) -> nn.Module:
    """A CPU-sized PSPNet: ResNet-18 at a quarter width."""
    torch.manual_seed(0)
    return build_model("pspnet", num_classes=3, **{"backbone": "resnet18", "width": 0.25, **options})


# --- the quickstart model ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 96])
def test_quickstart_squeezenet_pspnet_with_and_without_ppm(size: int) -> None:
    torch.manual_seed(0)
    with_ppm = build_model("pspnet", num_classes=4, backbone="squeezenet1_1", ppm=True).eval()
    without = build_model("pspnet", num_classes=4, backbone="squeezenet1_1", ppm=False).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        assert with_ppm(x)["out"].shape == (1, 4, size, size)
        assert without(x)["out"].shape == (1, 4, size, size)
    assert with_ppm.output_stride == 8  # squeezenet's last pool gives its stride to dilation
    # the PPM: bins 1, 2, 3, 6, adaptive average pooling, 1x1 conv to 512 / 4 per level
    ppm = with_ppm.ppm
    assert [level[0].output_size for level in ppm.levels] == [1, 2, 3, 6]
    assert all(isinstance(level[0], nn.AdaptiveAvgPool2d) for level in ppm.levels)
    assert [level[1][0].out_channels for level in ppm.levels] == [128] * 4
    # ppm=False removes the module and its parameters; the head then reads 512 instead of 1024 channels
    assert without.ppm is None and not any(k.startswith("ppm.") for k in without.state_dict())
    head_difference = 512 * 512 * 9  # the 3x3 head conv's extra input channels
    assert n_params(with_ppm) - n_params(without) == n_params(ppm) + head_difference


def test_quickstart_trains_a_step() -> None:
    model = build_model("pspnet", num_classes=3, backbone="squeezenet1_1")
    model.train()
    x, target = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    out = model(x)
    ce = nn.functional.cross_entropy
    loss = ce(out["out"], target) + 0.4 * ce(out["aux"], target)
    loss.backward()
    assert model.ppm.levels[3][1][0].weight.grad.abs().sum() > 0
    assert model.aux_classifier[0][0].weight.grad.abs().sum() > 0


# --- Table 1's ablation factors ------------------------------------------------------------------


def test_output_strides_8_16_32() -> None:
    x = torch.randn(1, 3, 64, 64)
    for output_stride in (8, 16, 32):
        model = tiny(output_stride=output_stride).eval()
        seen: list[int] = []
        model.ppm.register_forward_hook(lambda m, args, out, seen=seen: seen.append(args[0].shape[-1]))
        with torch.no_grad():
            assert model(x)["out"].shape == (1, 3, 64, 64)
        assert seen == [64 // output_stride]
        assert model.output_stride == output_stride


def test_set_output_stride_keeps_every_weight() -> None:
    model = tiny(output_stride=16).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    model.set_output_stride(8)
    with torch.no_grad():
        assert model.backbone(x)["out"].shape[-1] == 8
        assert model(x)["out"].shape == (1, 3, 64, 64)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(UserError, match="supports output_stride 8, 16, 32"):
        model.set_output_stride(64)


def test_bins_pooling_and_dim_reduction_shape_the_ppm() -> None:
    base = tiny()
    in_channels = base.backbone.channels["out"]  # 128 at width 0.25
    single = tiny(bins=[1]).ppm
    assert [level[0].output_size for level in single.levels] == [1]
    assert single.levels[0][1][0].out_channels == in_channels  # 1 level: reduce to in/1
    assert single.out_channels == 2 * in_channels
    maxed = tiny(pooling="max").ppm
    assert all(isinstance(level[0], nn.AdaptiveMaxPool2d) for level in maxed.levels)
    plain = tiny(dim_reduction=False)
    assert all(isinstance(level, nn.AdaptiveAvgPool2d) for level in plain.ppm.levels)
    assert n_params(plain.ppm) == 0
    assert plain.classifier[0][0].in_channels == in_channels * 5  # input + 4 full-width levels
    assert base.classifier[0][0].in_channels == in_channels * 2
    with torch.no_grad():
        assert plain.eval()(torch.randn(1, 3, 48, 48))["out"].shape == (1, 3, 48, 48)


def test_max_pooling_levels_pool_maxima() -> None:
    ppm = PyramidPooling(2, bins=[1, 2], pooling="max", dim_reduction=False).eval()
    x = torch.arange(32.0).reshape(1, 2, 4, 4)
    out = ppm(x)
    assert out.shape == (1, 6, 4, 4)
    assert torch.equal(out[0, 2], torch.full((4, 4), 15.0))  # bin 1 of channel 0: its maximum
    assert out[0, 4, 0, 0] == 5.0 and out[0, 4, 3, 3] == 15.0  # bin 2: quadrant maxima at the corners


def test_aux_head_only_while_training() -> None:
    model = tiny()
    assert isinstance(model.aux_classifier, nn.Sequential)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    out = model(x)
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert set(model(x)) == {"out"}
    no_aux = tiny(aux=False).train()
    assert no_aux.aux_classifier is None and set(no_aux(x)) == {"out"}


def test_channels_last_forward_matches() -> None:
    model = tiny().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)["out"]
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))["out"]
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


# --- weights from local files ------------------------------------------------------------------------


def test_whole_model_weights_round_trip(tmp_path: Path) -> None:
    trained = tiny().eval()
    path = tmp_path / "pspnet.pt"
    torch.save(trained.state_dict(), path)
    loaded = tiny(weights=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["out"], trained(x)["out"])
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "wrapped.pt")
    tiny(weights=str(tmp_path / "wrapped.pt"))
    with pytest.raises(UserError, match="shapes differ.*classifier"):
        build_model("pspnet", num_classes=5, backbone="resnet18", width=0.25, weights=str(path))


def test_backbone_weights_with_torchvision_names(tmp_path: Path) -> None:
    torch.manual_seed(1)
    imagenet = torchvision.models.resnet18(weights=None)  # stands in for a local ImageNet checkpoint
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet.state_dict(), path)  # includes fc.*, which the backbone ignores
    model = build_model("pspnet", num_classes=3, backbone="resnet18", deep_stem=False, weights=str(path))
    assert torch.equal(model.backbone.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight)
    assert torch.equal(model.backbone.conv1.weight, imagenet.conv1.weight)
    with pytest.raises(UserError, match=r"does not fit this backbone: missing .*conv2\.weight"):
        build_model("pspnet", num_classes=3, backbone="resnet18", weights=str(path))  # deep stem by default


def test_weights_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        tiny(weights=str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(UserError, match="not a readable state dict"):
        tiny(weights=str(junk))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(UserError, match="holds no state dict"):
        tiny(weights=str(tmp_path / "list.pt"))


# --- errors ----------------------------------------------------------------------------------------


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(UserError, match="did you mean 'ppm'"):
        build_model("pspnet", num_classes=3, ppn=False)
    with pytest.raises(UserError, match="'median' is not one of"):
        build_model("pspnet", num_classes=3, pooling="median")
    with pytest.raises(UserError, match="bins needs at least one pyramid level"):
        tiny(bins=[])
    with pytest.raises(UserError, match=r"option .bins. = \[1, 0\] is below the minimum 1"):
        tiny(bins=[1, 0])
    with pytest.raises(UserError, match=r"squeezenet1_1' supports output_stride 8, 16"):
        build_model("pspnet", num_classes=3, backbone="squeezenet1_1", output_stride=32)
    with pytest.raises(UserError, match="num_classes must be a positive integer"):
        build_pspnet(num_classes=0, backbone="resnet18", width=0.25)
    with pytest.raises(UserError, match="deep_stem=True applies to ResNet"):
        build_model("pspnet", num_classes=3, backbone="vgg16", deep_stem=True, width=0.125)


def test_runtime_errors_name_the_constraint() -> None:
    model = build_model("pspnet", num_classes=3, backbone="squeezenet1_1").eval()
    with torch.no_grad(), pytest.raises(UserError, match="at least 13x13 px; got 12x12"):
        model(torch.randn(1, 3, 12, 12))
    with pytest.raises(UserError, match="batch size of at least 2"):
        tiny().train()(torch.randn(1, 3, 64, 64))  # the PPM's 1x1 bin under BatchNorm


# --- catalog and full-width parameter counts ---------------------------------------------------------


def test_catalog_defaults_match_the_builder() -> None:
    entry = get_entry("pspnet")
    signature = inspect.signature(build_pspnet).parameters
    for spec in entry.options:
        default = signature[spec.name].default
        assert (list(default) if isinstance(default, tuple) else default) == spec.default, spec.name


def test_official_pspnet50_parameter_count() -> None:
    with torch.device("meta"):
        model = build_model("pspnet", num_classes=150)  # ADE20K, as semseg's PSPNet50
        baseline = build_model("pspnet", num_classes=150, ppm=False, aux=False)
    # deep-stem ResNet-50: torchvision's 23,508,032 features - its 7x7 conv (9,408) + three 3x3 convs
    # (1,728 + 36,864 + 73,728) and two more BNs (128 + 256), + res2's first unit reading 128 channels
    # instead of 64 in its 1x1 conv and its projection shortcut (+4,096 + 16,384)
    backbone = 23_508_032 - 9_408 + 1_728 + 36_864 + 73_728 + 128 + 256 + 4_096 + 16_384
    ppm = 4 * (2048 * 512 + 2 * 512)  # four levels of 1x1 conv 2048 -> 512 + BN
    head = 4096 * 512 * 9 + 2 * 512 + 512 * 150 + 150  # 3x3 conv 4096 -> 512 + BN, 1x1 classifier
    aux = 1024 * 256 * 9 + 2 * 256 + 256 * 150 + 150  # on res4 (1024 channels)
    assert n_params(model.backbone) == backbone
    assert n_params(model.ppm) == ppm and n_params(model.aux_classifier) == aux
    assert n_params(model) == backbone + ppm + head + aux == 49_180_908
    assert n_params(baseline) == backbone + 2048 * 512 * 9 + 2 * 512 + 512 * 150 + 150
