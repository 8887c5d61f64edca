"""DeepLab v3 / v3+: ASPP, decoder ablations, output-stride switching, weights, parameter counts."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

from segbench.errors import UserError
from segbench.models import build_model, get_entry
from segbench.models.backbones.layers import SeparableConv2d
from segbench.models.deeplab import DecoderConvs, build_deeplabv3, build_deeplabv3plus


def n_params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def tiny(name: str = "deeplabv3plus", **options: object) -> nn.Module:
    """A CPU-sized DeepLab: ResNet-18 at an eighth of its width (ASPP and decoder 32 wide)."""
    torch.manual_seed(0)
    return build_model(name, num_classes=3, **{"backbone": "resnet18", "width": 0.125, **options})


def aspp_rates(model: nn.Module) -> list[int]:
    return [branch[0].dilation[0] for branch in model.aspp.branches[1:]]


def aspp_input_size(model: nn.Module, x: torch.Tensor) -> int:
    seen: list[int] = []
    handle = model.aspp.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
    with torch.no_grad():
        assert model(x)["out"].shape[-2:] == x.shape[-2:]
    handle.remove()
    return seen[0]


# --- output strides ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["deeplabv3", "deeplabv3plus"])
def test_output_strides_and_aspp_rates(name: str) -> None:
    x = torch.randn(1, 3, 64, 64)
    expected_rates = {8: [12, 24, 36], 16: [6, 12, 18], 32: [3, 6, 9]}
    for output_stride in (8, 16, 32):
        model = tiny(name, output_stride=output_stride).eval()
        assert model(x)["out"].shape == (1, 3, 64, 64)
        assert aspp_input_size(model, x) == 64 // output_stride
        assert aspp_rates(model) == expected_rates[output_stride]
        assert [b[0].padding[0] for b in model.aspp.branches[1:]] == expected_rates[output_stride]


def test_train_at_16_evaluate_at_8_with_the_same_weights() -> None:
    model = tiny("deeplabv3plus", output_stride=16).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    assert aspp_input_size(model, x) == 4
    # block4 rate (2 at stride 16, 4 at 8) times the default multi-grid, (1, 2) for ResNet-18's two units
    assert [unit.conv2.dilation[0] for unit in model.backbone.layer4] == [2, 4]
    model.set_output_stride(8)
    assert model.output_stride == 8 and aspp_rates(model) == [12, 24, 36]
    assert aspp_input_size(model, x) == 8
    assert [unit.conv2.dilation[0] for unit in model.backbone.layer4] == [4, 8]
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(UserError, match="ASPP rate 7 .* no integer equivalent at output stride 32"):
        tiny("deeplabv3", aspp_rates=[6, 7]).set_output_stride(32)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_output_stride_8_is_the_stride_16_network_sampled_densely(backbone: str) -> None:
    # What makes DeepLab v3+'s "train at 16, evaluate at 8" sound: at every other position, away
    # from the zero-padded borders, the re-strided backbone computes what it computed at 16.
    torch.manual_seed(0)
    net = build_model("deeplabv3plus", num_classes=7, backbone=backbone, width=0.25, decoder=False).eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        at16 = net.backbone(x)["out"]
        net.set_output_stride(8)
        at8 = net.backbone(x)["out"]
    assert at8.shape[-1] == 2 * at16.shape[-1] == 32
    inner = (..., slice(4, -4), slice(4, -4))
    scale = at16.abs().mean().item()
    torch.testing.assert_close(at8[..., ::2, ::2][inner], at16[inner], rtol=1e-4, atol=1e-4 * scale)
    # the conv that lost its stride reads the grid at the old rate; what follows it, the new one
    first = net.backbone.layer3[0]
    strided = first.conv2 if backbone == "resnet50" else first.conv1
    assert strided.stride == (1, 1) and strided.dilation == (1, 1)
    assert net.backbone.layer3[1].conv2.dilation == (2, 2)


def test_multi_grid_defaults_to_deeplab_v3s_on_resnets() -> None:
    with torch.device("meta"):
        model = build_model("deeplabv3", num_classes=21, backbone="resnet50")
        flat = build_model("deeplabv3", num_classes=21, backbone="resnet50", multi_grid=[1, 1, 1])
    # DeepLab v3's block4 rates 2 x (1, 2, 4) at output stride 16. torchvision's ResNet strides
    # block4 in its first unit's 3x3 conv (TF's in block3's last unit); TF's rule keeps that conv at
    # the rate of the grid it reads (1), so the multi-grid shows in the units after it.
    assert [unit.conv2.dilation[0] for unit in model.backbone.layer4] == [1, 4, 8]
    assert [unit.conv2.dilation[0] for unit in flat.backbone.layer4] == [1, 2, 2]
    with pytest.raises(UserError, match="no multi-grid block"):
        tiny("deeplabv3", backbone="mobilenet_v2", multi_grid=[1, 2, 4])


# --- structural options ------------------------------------------------------------------------------


def test_image_pooling_branch() -> None:
    with_pooling, without = tiny("deeplabv3"), tiny("deeplabv3", image_pooling=False)
    assert isinstance(with_pooling.aspp.pooling, nn.Sequential) and without.aspp.pooling is None
    assert with_pooling.aspp.project[0][0].in_channels == 5 * 32  # 1x1 + three rates + pooling
    assert without.aspp.project[0][0].in_channels == 4 * 32
    assert not any(".pooling." in k for k in without.state_dict())
    assert tiny("deeplabv3", aspp_rates=[6, 12, 18, 24]).aspp.project[0][0].in_channels == 6 * 32


def test_decoder_off_is_deeplab_v3() -> None:
    v3plus, off = tiny(), tiny(decoder=False)
    assert off.decoder is None and not any(k.startswith("decoder.") for k in off.state_dict())
    assert n_params(v3plus) - n_params(off) == n_params(v3plus.decoder)
    assert n_params(off) == n_params(tiny("deeplabv3"))  # same parameters as the v3 entry
    with torch.no_grad():
        assert off.eval()(torch.randn(1, 3, 64, 64))["out"].shape == (1, 3, 64, 64)


@pytest.mark.parametrize("channels", [8, 16, 32, 48, 64])
def test_low_level_channels_set_the_projection_width(channels: int) -> None:
    with torch.device("meta"):
        model = build_model("deeplabv3plus", num_classes=21, backbone="resnet18", low_level_channels=channels)
    projection = model.decoder.projections[0][0]
    assert projection.in_channels == 64 and projection.out_channels == channels  # res2 of ResNet-18
    assert model.decoder.stages[0][0][0].in_channels == 256 + channels


@pytest.mark.parametrize(
    ("spec", "kernel", "channels", "count"),
    [("3x3_256x2", 3, 256, 2), ("3x3_256", 3, 256, 1), ("3x3_256x3", 3, 256, 3), ("3x3_128", 3, 128, 1),
     ("3x3_128x2", 3, 128, 2), ("1x1_256", 1, 256, 1)],
)  # fmt: skip
def test_decoder_convs_follow_table_2(spec: str, kernel: int, channels: int, count: int) -> None:
    assert DecoderConvs.parse(spec) == DecoderConvs(kernel, channels, count)
    with torch.device("meta"):
        model = build_model("deeplabv3plus", num_classes=21, backbone="resnet18", decoder_convs=spec)
    convs = [layer[0] for layer in model.decoder.stages[0]]
    assert [(c.kernel_size[0], c.out_channels) for c in convs] == [(kernel, channels)] * count
    assert model.classifier.in_channels == channels


def test_conv2_plus_conv3_refines_twice() -> None:
    model = tiny(low_level="conv2+conv3").eval()
    projections = [p[0].in_channels for p in model.decoder.projections]
    assert projections == [16, 8]  # res3 (stride 8) first, then res2 (stride 4), at width 0.125
    assert len(model.decoder.stages) == 2
    sizes: list[int] = []
    for stage in model.decoder.stages:
        stage.register_forward_hook(lambda m, args, out: sizes.append(out.shape[-1]))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64))["out"].shape == (1, 3, 64, 64)
    assert sizes == [8, 16]


def test_separable_convs_in_aspp_and_decoder_cut_parameters() -> None:
    plain, separable = tiny(), tiny(separable=True)
    assert all(isinstance(b, SeparableConv2d) for b in separable.aspp.branches[1:])
    assert all(isinstance(layer, SeparableConv2d) for layer in separable.decoder.stages[0])
    assert separable.aspp.branches[2].depthwise.dilation == (12, 12)
    assert n_params(separable.aspp) < n_params(plain.aspp) / 3
    assert n_params(separable.decoder) < n_params(plain.decoder) / 3
    separable.set_output_stride(8)
    assert separable.aspp.branches[2].depthwise.dilation == (24, 24)
    with torch.no_grad():
        assert separable.eval()(torch.randn(1, 3, 64, 64))["out"].shape == (1, 3, 64, 64)


def test_aux_head_only_while_training() -> None:
    model = tiny(aux=True)
    x = torch.randn(2, 3, 64, 64)
    out = model.train()(x)
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 3, 64, 64)
    with torch.no_grad():
        assert set(model.eval()(x)) == {"out"}
    assert tiny().aux_classifier is None  # DeepLab trains without it by default


def test_mobilenet_and_xception_backbones() -> None:
    x = torch.randn(1, 3, 64, 64)
    for backbone, width in [("mobilenet_v2", 0.25), ("mobilenet_v3_large", 0.25), ("xception65", 0.0625)]:
        model = tiny("deeplabv3plus", backbone=backbone, width=width, separable=True).eval()
        with torch.no_grad():
            assert model(x)["out"].shape == (1, 3, 64, 64), backbone
        assert model.decoder.projections[0][0].in_channels == model.backbone.channels["low_level"]


def test_channels_last_forward_matches() -> None:
    model = tiny(low_level="conv2+conv3").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)["out"]
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))["out"]
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


# --- weights and errors --------------------------------------------------------------------------------


def test_whole_model_and_backbone_weights(tmp_path: Path) -> None:
    trained = tiny().eval()
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    torch.save(trained.backbone.state_dict(), tmp_path / "backbone.pt")
    x = torch.randn(1, 3, 64, 64)
    loaded = tiny(weights=str(tmp_path / "model.pt")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["out"], trained(x)["out"])
    torch.manual_seed(5)
    partial = build_deeplabv3plus(
        num_classes=3, backbone="resnet18", width=0.125, weights=str(tmp_path / "backbone.pt")
    )
    assert torch.equal(partial.backbone.layer3[0].conv1.weight, trained.backbone.layer3[0].conv1.weight)
    assert not torch.equal(partial.aspp.project[0][0].weight, trained.aspp.project[0][0].weight)
    with pytest.raises(UserError, match="unexpected tensors .*decoder"):
        tiny(decoder=False, weights=str(tmp_path / "model.pt"))


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(UserError, match="decoder_convs '3x3x256' is not KxK_C"):
        tiny(decoder_convs="3x3x256")
    with pytest.raises(UserError, match="is not KxK_C"):
        tiny(decoder_convs="3x3_0")
    with pytest.raises(UserError, match="'conv4' is not one of"):
        tiny(low_level="conv4")
    with pytest.raises(UserError, match="did you mean 'low_level_channels'"):
        tiny(low_level_channel=32)
    with pytest.raises(UserError, match="option .low_level_channels. = 0 is below the minimum 1"):
        tiny(low_level_channels=0)
    with pytest.raises(UserError, match=r"option .aspp_rates. = \[6, -12\] is below the minimum 1"):
        tiny(aspp_rates=[6, -12])
    with pytest.raises(UserError, match="has no integer equivalent at output stride 32"):
        tiny(aspp_rates=[5], output_stride=32)
    with pytest.raises(UserError, match="batch size of at least 2"):
        tiny().train()(torch.randn(1, 3, 64, 64))  # image pooling's BatchNorm over a 1x1 map
    with pytest.raises(UserError, match="supports output_stride 8, 16"):
        tiny(backbone="squeezenet1_1", output_stride=32)


def test_catalog_defaults_match_the_builders() -> None:
    for name, builder in [("deeplabv3", build_deeplabv3), ("deeplabv3plus", build_deeplabv3plus)]:
        signature = inspect.signature(builder).parameters
        for spec in get_entry(name).options:
            default = signature[spec.name].default
            expected = list(default) if isinstance(default, tuple) else default
            assert expected == spec.default, f"{name}.{spec.name}"


# --- full-width parameter counts --------------------------------------------------------------------------


def test_parameter_counts_against_torchvision_and_derivations() -> None:
    with torch.device("meta"):
        v3_r101 = build_model("deeplabv3", num_classes=21, aux=True)
        v3_r50 = build_model("deeplabv3", num_classes=21, backbone="resnet50", aux=True)
        v3 = build_model("deeplabv3", num_classes=21)
        v3plus = build_model("deeplabv3plus", num_classes=21)
        x65 = build_model("deeplabv3plus", num_classes=21, backbone="xception65", separable=True)
    # torchvision's published deeplabv3_resnet101/50 (aux included) have one 3x3 conv 256 + BN after
    # ASPP that the official DeepLab does not; everything else is the same modules
    extra_conv = 256 * 256 * 9 + 2 * 256
    assert n_params(v3_r101) == 60_996_202 - extra_conv
    assert n_params(v3_r50) == 42_004_074 - extra_conv
    assert n_params(v3) == n_params(v3_r101) - (1024 * 256 * 9 + 2 * 256 + 256 * 21 + 21) == 58_040_661
    # the v3+ decoder: 1x1 projection 256 -> 48 + BN, 3x3 conv (256 + 48) -> 256 + BN, 3x3 256 -> 256 + BN
    decoder = 256 * 48 + 96 + 304 * 256 * 9 + 512 + 256 * 256 * 9 + 512
    assert n_params(v3plus) - n_params(v3) == decoder
    assert n_params(v3plus) == 59_344_309

    # Xception-65 + separable ASPP/decoder: backbone 37,867,312 (see test_models_backbones), ASPP =
    # 1x1 + three separable 3x3 + pooling 1x1 (each 256 + BN) + projection 1280 -> 256 + BN
    def separable(cin: int, cout: int) -> int:
        return cin * 9 + 2 * cin + cin * cout + 2 * cout

    aspp = 2 * (2048 * 256 + 512) + 3 * separable(2048, 256) + 1280 * 256 + 512
    sc_decoder = 256 * 48 + 96 + separable(304, 256) + separable(256, 256)
    assert n_params(x65) == 37_867_312 + aspp + sc_decoder + 256 * 21 + 21 == 41_055_413
