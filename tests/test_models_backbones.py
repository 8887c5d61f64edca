"""Backbones: feature taps, output strides 8/16/32, weight-free stride switches, parameter counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from segbench.errors import UserError
from segbench.models.backbones import BACKBONES, build_backbone
from segbench.models.backbones.base import FEATURES, dilation_plan
from segbench.models.backbones.layers import SeparableConv2d

REPO = Path(__file__).resolve().parents[1]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def rates(layer: nn.Sequential, conv: str = "conv2") -> list[int]:
    return [getattr(unit, conv).dilation[0] for unit in layer]


# --- feature maps at every output stride -------------------------------------------------------

SMALL = ["resnet18", "mobilenet_v2", "mobilenet_v3_large", "squeezenet1_1", "vgg16", "xception65"]


@pytest.mark.parametrize("name", SMALL)
def test_features_follow_the_output_stride(name: str) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(name, output_stride=16, width=0.125).eval()
    x = torch.randn(1, 3, 64, 64)
    native = max(backbone.supported_output_strides)
    for output_stride in backbone.supported_output_strides:
        before = {k: v.clone() for k, v in backbone.state_dict().items()}
        backbone.set_output_stride(output_stride)
        assert backbone.output_stride == output_stride
        with torch.no_grad():
            features = backbone(x)
        assert set(features) == set(FEATURES)
        for key, value in features.items():
            assert value.shape[1] == backbone.channels[key], key
        # squeezenet's unpadded conv/pools give 64 -> 31 -> 15 -> 7 -> 3 instead of 64/s
        expected = 64 // output_stride if name != "squeezenet1_1" else {8: 7, 16: 3}[output_stride]
        assert features["out"].shape[-1] == expected
        assert features["low_level"].shape[-1] == (16 if name != "squeezenet1_1" else 15)
        assert features["aux"].shape[-1] >= features["out"].shape[-1]
        # the switch touches strides and rates only
        after = backbone.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)
    assert native == (16 if name == "squeezenet1_1" else 32)


def test_xception71_and_resnet_variants_build_with_known_taps() -> None:
    net = build_backbone("xception71", output_stride=16, width=0.125)
    assert net.channels == {"low_level": 32, "mid_level": 91, "aux": 91, "out": 256}
    deep = build_backbone("resnet34", output_stride=8, width=0.25, deep_stem=True)
    assert deep.conv3.out_channels == 32 and deep.layer1[0].conv1.in_channels == 32
    with torch.no_grad():
        out = deep.eval()(torch.randn(1, 3, 40, 40))
    assert out["out"].shape[-2:] == (5, 5)


# --- DeepLab's and PSPNet's dilation rules ---------------------------------------------------------


def test_dilation_plan_is_deeplabs_stack_blocks_dense() -> None:
    # units with strides 2, 2, 1, 2: at output stride 4 the third stride goes to rate 2, the unit
    # losing its stride keeps the old rate (TF) or takes the new one (PSPNet's stage-wise rule)
    assert dilation_plan([2, 2, 1, 2], 8) == [(2, 1), (2, 1), (1, 1), (2, 1)]
    assert dilation_plan([2, 2, 1, 2], 4) == [(2, 1), (2, 1), (1, 1), (1, 1)]
    assert dilation_plan([2, 2, 2, 1, 2], 4) == [(2, 1), (2, 1), (1, 1), (1, 2), (1, 2)]
    assert dilation_plan([2, 2, 2, 1, 2], 4, dilate_first=True) == [(2, 1), (2, 1), (1, 2), (1, 2), (1, 4)]
    with pytest.raises(ValueError, match="cannot be reached"):
        dilation_plan([2, 2], 8)


def test_resnet_rates_match_pspnet_and_deeplab_v3_multi_grid() -> None:
    net = build_backbone("resnet50", output_stride=8, width=0.125)
    # PSPNet's official code: all of res4 at rate 2, all of res5 at rate 4, no strides there
    assert rates(net.layer3) == [2] * 6 and rates(net.layer4) == [4] * 3
    assert net.layer3[0].conv2.stride == (1, 1) and net.layer3[0].downsample[0].stride == (1, 1)
    grid = build_backbone("resnet50", output_stride=16, width=0.125, multi_grid=(1, 2, 4))
    assert rates(grid.layer3) == [1] * 6 and grid.layer3[0].conv2.stride == (2, 2)
    assert rates(grid.layer4) == [2, 4, 8]  # DeepLab v3: 2 x (1, 2, 4) in block4 at output stride 16
    grid.set_output_stride(8)
    assert rates(grid.layer4) == [4, 8, 16] and rates(grid.layer3) == [2] * 6
    grid.set_output_stride(32)
    assert rates(grid.layer4) == [1, 2, 4] and grid.layer4[0].conv2.stride == (2, 2)
    assert grid.layer4[0].conv2.padding == (1, 1)


def test_mobilenet_and_xception_dilate_after_the_unit_that_lost_its_stride() -> None:
    mobile = build_backbone("mobilenet_v2", output_stride=16, width=0.25)
    depthwise = [m for m in mobile.features.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    strided = [c for c in depthwise if c.stride == (2, 2)]
    assert len(strided) == 3  # of the four stride-2 blocks, the last runs at stride 1 ...
    assert [c.dilation[0] for c in depthwise[-4:]] == [1, 2, 2, 2]  # ... at the old rate, then rate 2
    xception = build_backbone("xception65", output_stride=8, width=0.125, multi_grid=(1, 2, 4))
    exit_rates = [conv.depthwise.dilation[0] for conv in xception.exit_flow[1].separable]
    assert exit_rates == [4, 8, 16]  # rate 4 at output stride 8, times the multi-grid
    assert xception.entry_flow[2].separable[2].depthwise.dilation == (1, 1)
    assert all(isinstance(conv, SeparableConv2d) for conv in xception.middle_flow[0].separable)


def test_pools_lose_their_stride_the_deeplab_v1_way() -> None:
    vgg = build_backbone("vgg16", output_stride=8, width=0.125)
    pools = [m for m in vgg.features if isinstance(m, nn.MaxPool2d)]
    # conv4 runs at stride 8 anyway; pool4 and pool5 become 3x3/1 and conv5 dilates by 2
    assert [(p.kernel_size, p.stride, p.padding) for p in pools[-2:]] == [(3, 1, 1), (3, 1, 1)]
    assert [c.dilation[0] for c in vgg.features if isinstance(c, nn.Conv2d)][-6:] == [1, 1, 1, 2, 2, 2]
    squeeze = build_backbone("squeezenet1_1", output_stride=8, width=0.25)
    assert squeeze.features[8].stride == 1 and squeeze.features[12].expand3x3.dilation == (2, 2)
    squeeze.set_output_stride(16)
    assert squeeze.features[8].stride == 2 and squeeze.features[12].expand3x3.padding == (1, 1)


# --- parameter counts: torchvision's published totals less their classifiers ------------------


def test_backbones_equal_torchvision_feature_extractors() -> None:
    with torch.device("meta"):
        built = {name: build_backbone(name) for name in ["resnet18", "resnet50", "resnet101", "vgg16"]}
        built["mobilenet_v2"] = build_backbone("mobilenet_v2")
        built["mobilenet_v3_large"] = build_backbone("mobilenet_v3_large")
        built["squeezenet1_1"] = build_backbone("squeezenet1_1", output_stride=16)
    # torchvision's num_params minus the ImageNet classifier (fc / classifier / final conv)
    assert n_params(built["resnet18"]) == 11_689_512 - (512 * 1000 + 1000)
    assert n_params(built["resnet50"]) == 25_557_032 - (2048 * 1000 + 1000)
    assert n_params(built["resnet101"]) == 44_549_160 - (2048 * 1000 + 1000)
    assert n_params(built["vgg16"]) == 138_357_544 - (
        25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    )
    # DeepLab's MobileNetV2 also drops the 1280-channel 1x1 conv + BN
    assert n_params(built["mobilenet_v2"]) == 3_504_872 - (1280 * 1000 + 1000) - (320 * 1280 + 2 * 1280)
    assert n_params(built["mobilenet_v3_large"]) == 5_483_032 - (960 * 1280 + 1280 + 1280 * 1000 + 1000)
    assert n_params(built["squeezenet1_1"]) == 1_235_496 - (512 * 1000 + 1000)


def test_parameter_names_load_torchvision_checkpoints() -> None:
    with torch.device("meta"):
        pairs = [
            (build_backbone("resnet50"), torchvision.models.resnet50()),
            (build_backbone("squeezenet1_1", output_stride=16), torchvision.models.squeezenet1_1()),
            (build_backbone("vgg16"), torchvision.models.vgg16()),
            (build_backbone("mobilenet_v3_large"), torchvision.models.mobilenet_v3_large()),
        ]
    for ours, theirs in pairs:
        reference = {k: v.shape for k, v in theirs.state_dict().items()}
        assert {k: v.shape for k, v in ours.state_dict().items()}.items() <= reference.items()
        extra = set(reference) - set(ours.state_dict())
        assert all(k.startswith(("fc.", "classifier.")) for k in extra), sorted(extra)[:3]


def _xception_params(entry: list[tuple[int, int]]) -> int:
    """Independent count of DeepLab's aligned Xception (TF ``xception.py``), BN = 2 per channel."""

    def conv_bn(cin: int, cout: int, k: int) -> int:
        return cin * cout * k * k + 2 * cout

    def separable(cin: int, cout: int) -> int:  # depthwise 3x3 + BN, pointwise 1x1 + BN
        return cin * 9 + 2 * cin + cin * cout + 2 * cout

    def module(cin: int, depths: tuple[int, int, int], shortcut: bool) -> int:
        chans = [cin, *depths]
        return sum(separable(chans[i], chans[i + 1]) for i in range(3)) + (
            conv_bn(cin, depths[2], 1) if shortcut else 0
        )

    total, cin = conv_bn(3, 32, 3) + conv_bn(32, 64, 3), 64
    for depth, _ in entry:
        total += module(cin, (depth,) * 3, True)
        cin = depth
    total += 16 * module(728, (728, 728, 728), False)
    return total + module(728, (728, 1024, 1024), True) + module(1024, (1536, 1536, 2048), False)


def test_xception_parameter_counts() -> None:
    with torch.device("meta"):
        x65, x71 = build_backbone("xception65"), build_backbone("xception71")
    assert n_params(x65) == _xception_params([(128, 2), (256, 2), (728, 2)]) == 37_867_312
    assert n_params(x71) == _xception_params([(128, 2), (256, 1), (256, 2), (728, 1), (728, 2)]) == 40_289_736


# --- errors --------------------------------------------------------------------------------------


def test_bad_backbone_arguments_are_user_errors() -> None:
    with pytest.raises(UserError, match="did you mean 'resnet50'"):
        build_backbone("resnet05")
    with pytest.raises(UserError, match=r"supports output_stride 8, 16 \(native stride 16"):
        build_backbone("squeezenet1_1", output_stride=32)
    with pytest.raises(UserError, match="supports output_stride 8, 16, 32"):
        build_backbone("resnet18", output_stride=4, width=0.125)
    with pytest.raises(UserError, match="deep_stem=True applies to ResNet"):
        build_backbone("mobilenet_v2", deep_stem=True)
    with pytest.raises(UserError, match="needs 3 positive integer unit rates"):
        build_backbone("resnet50", width=0.125, multi_grid=(1, 2))
    with pytest.raises(UserError, match="needs 2 positive integer"):
        build_backbone("resnet18", width=0.125, multi_grid=(1, 2, 4))
    with pytest.raises(UserError, match="has no multi-grid block"):
        build_backbone("vgg16", width=0.125, multi_grid=(1, 2, 4))
    with pytest.raises(UserError, match="width must be a positive number"):
        build_backbone("resnet18", width=0)


def test_too_small_inputs_say_which_sizes_work() -> None:
    squeeze = build_backbone("squeezenet1_1", output_stride=16, width=0.125).eval()
    assert squeeze.min_input_size == 25
    with torch.no_grad():
        assert squeeze(torch.randn(1, 3, 25, 25))["out"].shape[-1] == 1
        with pytest.raises(UserError, match="at least 25x25 px; got 24x30"):
            squeeze(torch.randn(1, 3, 24, 30))
        squeeze.set_output_stride(8)
        assert squeeze.min_input_size == 13
        assert squeeze(torch.randn(1, 3, 13, 13))["out"].shape[-1] == 1
    assert build_backbone("vgg16", output_stride=32, width=0.125).min_input_size == 32
    assert build_backbone("resnet18", output_stride=32, width=0.125).min_input_size == 1


def test_package_and_catalog_modules_stay_torch_free() -> None:
    code = (
        "import sys; import segbench.models.backbones as b; "
        "import segbench.models.catalog.pspnet, segbench.models.catalog.deeplab; "
        "assert len(b.BACKBONES) == 10; assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert set(BACKBONES) >= {"resnet50", "xception65", "squeezenet1_1", "mobilenet_v3_large"}
