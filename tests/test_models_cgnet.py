"""CGNet: the official CGNet_M3N21 (parameters, module names, checkpoints) and every ablation toggle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from segbench.errors import UserError
from segbench.models import build_model
from segbench.models.cgnet import ContextGuidedBlock, GlobalContext

SMALL = {"M": 2, "N": 3, "width": 0.25}  # stage widths 8 / 16 / 32


pytestmark = pytest.mark.usefixtures("one_thread")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_cgnet_m3n21_has_the_official_parameter_count() -> None:
    # Counted from wutianyiRosun/CGNet model/CGNet.py (Context_Guided_Network(19, M=3, N=21));
    # the paper rounds it to 0.5 M. Depth rows of the paper's M/N table from the same code:
    assert _params(build_model("cgnet", num_classes=19)) == 496_306
    assert _params(build_model("cgnet", num_classes=19, N=15)) == 423_682
    assert _params(build_model("cgnet", num_classes=19, N=9)) == 351_058


def test_module_names_are_the_official_checkpoints() -> None:
    keys = set(build_model("cgnet", num_classes=19).state_dict())
    for key in [
        "level1_0.conv.weight",
        "level1_0.act.weight",
        "b1.bn.running_mean",
        "level2_0.conv1x1.conv.weight",
        "level2_0.F_loc.conv.weight",
        "level2_0.F_sur.conv.weight",
        "level2_0.reduce.conv.weight",
        "level2_0.F_glo.fc.0.weight",
        "level2.1.bn_prelu.act.weight",
        "level3.19.F_glo.fc.2.bias",
        "bn_prelu_3.bn.weight",
        "classifier.0.conv.weight",
    ]:
        assert key in keys
    assert not any(key.startswith("level3.20") for key in keys)  # N - 1 = 20 CG blocks in stage 3


def test_logits_at_input_resolution_for_odd_sizes_and_no_aux() -> None:
    model = build_model("cgnet", num_classes=4, **SMALL)
    assert model.aux_classifier is None and model.output_stride == 8
    out = model.train()(torch.randn(2, 3, 33, 47))
    assert set(out) == {"out"} and out["out"].shape == (2, 4, 33, 47)


def test_stage_defaults_follow_the_official_dilations_and_reductions() -> None:
    model = build_model("cgnet", num_classes=2, **SMALL)
    assert model.level2[0].F_sur.conv.dilation == (2, 2) and model.level3[0].F_sur.conv.dilation == (4, 4)
    assert model.level2_0.F_sur.conv.dilation == (2, 2) and model.level3_0.F_sur.conv.dilation == (4, 4)
    assert model.level2[0].F_glo.fc[0].out_features == 16 // 8
    assert model.level3[0].F_glo.fc[0].out_features == 32 // 16
    custom = build_model("cgnet", num_classes=2, dilation=[3, 6], reduction=[2, 4], **SMALL)
    assert custom.level2[0].F_sur.conv.dilation == (3, 3) and custom.level3[1].F_sur.conv.dilation == (6, 6)
    assert custom.level2[0].F_glo.fc[0].out_features == 8 and custom.level3[0].F_glo.fc[0].out_features == 8


def test_f_sur_and_f_loc_toggles_remove_a_branch() -> None:
    full = build_model("cgnet", num_classes=3, **SMALL)
    no_sur = build_model("cgnet", num_classes=3, f_sur=False, **SMALL)
    no_loc = build_model("cgnet", num_classes=3, f_loc=False, **SMALL)
    for block in (*no_sur.level2, *no_sur.level3, no_sur.level2_0, no_sur.level3_0):
        assert block.F_sur is None and block.F_loc is not None
    for block in (*no_loc.level2, *no_loc.level3):
        assert block.F_loc is None and block.F_sur.conv.dilation[0] > 1
    # the one branch left takes all of the block's channels, so stage widths stay
    assert no_sur.level3[0].F_loc.conv.in_channels == 32 == 2 * full.level3[0].F_loc.conv.in_channels
    assert _params(no_sur) != _params(full)
    assert no_sur(torch.randn(1, 3, 24, 24))["out"].shape == (1, 3, 24, 24)


def test_f_glo_toggle_removes_the_global_context() -> None:
    full = build_model("cgnet", num_classes=3, **SMALL)
    no_glo = build_model("cgnet", num_classes=3, f_glo=False, **SMALL)
    removed = sum(_params(m) for m in full.modules() if isinstance(m, GlobalContext))
    assert _count(no_glo, GlobalContext) == 0 and _count(full, GlobalContext) == 1 + (2 - 1) + 1 + (3 - 1)
    assert _params(full) - _params(no_glo) == removed


def test_input_injection_toggle() -> None:
    full = build_model("cgnet", num_classes=3, **SMALL)
    plain = build_model("cgnet", num_classes=3, input_injection=False, **SMALL)
    assert full.sample1 is not None and plain.sample1 is None and plain.sample2 is None
    assert full.b1.bn.num_features == 8 + 3 and plain.b1.bn.num_features == 8
    assert (
        full.level3_0.conv1x1.conv.in_channels == 2 * 16 + 3 and plain.level3_0.conv1x1.conv.in_channels == 32
    )
    assert plain(torch.randn(1, 3, 20, 20))["out"].shape == (1, 3, 20, 20)


def test_activation_toggle_swaps_every_prelu() -> None:
    prelu = build_model("cgnet", num_classes=3, **SMALL)
    relu = build_model("cgnet", num_classes=3, activation="relu", **SMALL)
    assert _count(relu, nn.PReLU) == 0 and _count(relu, nn.ReLU) == _count(prelu, nn.PReLU) + _count(
        prelu, nn.ReLU
    )
    assert _params(prelu) - _params(relu) == sum(
        _params(m) for m in prelu.modules() if isinstance(m, nn.PReLU)
    )


def test_residual_lrl_and_grl_share_weights_but_not_the_function() -> None:
    torch.manual_seed(0)
    block = ContextGuidedBlock(8, dilation=2, reduction=2, residual="grl").eval()
    lrl = ContextGuidedBlock(8, dilation=2, reduction=2, residual="lrl").eval()
    lrl.load_state_dict(block.state_dict())
    x = torch.randn(1, 8, 6, 6)
    joint = block.bn_prelu(block.joint(block.conv1x1(x)))
    assert torch.allclose(block(x), x + block.F_glo(joint))  # GRL: the shortcut meets F_glo's output
    assert torch.allclose(lrl(x), block.F_glo(x + joint))  # LRL: the shortcut meets F_joi's output
    assert not torch.allclose(block(x), lrl(x))
    whole = build_model("cgnet", num_classes=3, residual="lrl", **SMALL)
    assert all(b.residual == "lrl" for b in (*whole.level2, *whole.level3))


def test_conv1x1_after_channelwise_adds_pointwise_convs() -> None:
    plain = build_model("cgnet", num_classes=3, **SMALL)
    pointwise = build_model("cgnet", num_classes=3, conv1x1_after_channelwise=True, **SMALL)
    added = [m for m in pointwise.modules() if getattr(m, "loc_pointwise", None) is not None]
    assert len(added) == 1 + (2 - 1) + 1 + (3 - 1)  # every CG block, down-sampling ones included
    extra = sum(b.loc_pointwise.conv.weight.numel() + b.sur_pointwise.conv.weight.numel() for b in added)
    assert _params(pointwise) - _params(plain) == extra
    assert pointwise.level3[0].loc_pointwise.conv.kernel_size == (1, 1)


def test_channels_last_gives_the_same_logits() -> None:
    model = build_model("cgnet", num_classes=3, **SMALL).eval()
    x = torch.randn(2, 3, 29, 35)
    expected = model(x)["out"]
    model = model.to(memory_format=torch.channels_last)
    assert torch.allclose(model(x.to(memory_format=torch.channels_last))["out"], expected, atol=1e-5)


def test_an_official_style_checkpoint_loads(tmp_path: Path) -> None:
    source = build_model("cgnet", num_classes=5, **SMALL).eval()
    # the official training scripts save {"model": DataParallel state dict, "epoch": n}
    checkpoint = {"model": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 300}
    torch.save(checkpoint, tmp_path / "model_300.pth")
    loaded = build_model("cgnet", num_classes=5, weights=str(tmp_path / "model_300.pth"), **SMALL).eval()
    x = torch.randn(1, 3, 24, 24)
    assert torch.equal(loaded(x)["out"], source(x)["out"])
    with pytest.raises(UserError, match="does not fit this model"):
        build_model("cgnet", num_classes=5, weights=str(tmp_path / "model_300.pth"), M=2, N=4, width=0.25)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"f_loc": False, "f_sur": False}, "needs f_loc or f_sur"),
        ({"dilation": [2]}, r"dilation is two integers \(stage 2, stage 3\)"),
        ({"reduction": [8, 0]}, r"option .reduction. = \[8, 0\] is below the minimum 1"),
        ({"M": 0}, "option .M. = 0 is below the minimum 1"),
        ({"activation": "gelu"}, "is not one of"),
        ({"residual": "global"}, "is not one of"),
        ({"f_gol": False}, "did you mean 'f_glo'"),
    ],
)
def test_bad_options_are_user_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_model("cgnet", num_classes=3, **options)
