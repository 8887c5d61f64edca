"""U-Net: the original unpadded net (parameter count, overlap-tile sizes), the padded variant, options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from segbench.errors import UserError
from segbench.models import build_model
from segbench.models.unet import margin, valid_sizes

TINY = {"base_width": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_original_unet_has_its_published_parameter_count() -> None:
    # 1 input channel, 2 classes, no BN: 23 convolutions, 64 -> 1024 channels.
    with torch.device("meta"):
        model = build_model("unet", num_classes=2, in_channels=1)
    assert _params(model) == 31_030_658
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert len(convs) == 23
    assert [level[0].out_channels for level in model.encoder] == [64, 128, 256, 512]
    assert model.bottleneck[0].out_channels == 1024


def test_the_original_maps_a_572_tile_to_388() -> None:
    model = build_model("unet", num_classes=2, in_channels=1, base_width=2).eval()
    assert model.margin == margin(4) == 92
    assert model.forward_tile(torch.randn(1, 1, 572, 572)).shape == (1, 2, 388, 388)


def test_unpadded_forward_mirrors_the_border_context_and_returns_input_resolution() -> None:
    model = build_model("unet", num_classes=3, depth=2, **TINY).eval()
    tiles: list[torch.Tensor] = []
    model.encoder[0].register_forward_pre_hook(lambda _m, args: tiles.append(args[0]))
    x = torch.randn(1, 3, 36, 40)  # 4 + k * 4 at depth 2
    out = model(x)["out"]
    assert out.shape == (1, 3, 36, 40)
    m = margin(2)
    tile = tiles[0]
    assert tile.shape[-2:] == (36 + 2 * m, 40 + 2 * m)
    assert torch.equal(tile[..., m : m + 36, m : m + 40], x)
    assert torch.equal(tile[..., m - 1, m : m + 40], x[..., 1, :])  # mirrored, not zero-padded
    assert torch.equal(tile[..., m : m + 36, m - 2], x[..., :, 2])


def test_unpadded_sizes_that_do_not_divide_are_errors_with_the_nearest_valid_sizes() -> None:
    model = build_model("unet", num_classes=2, **TINY)
    with pytest.raises(UserError, match=r"height 512: nearest valid 500 or 516"):
        model(torch.zeros(1, 3, 512, 500))  # the width 500 is valid
    assert valid_sizes(388, depth=4, padding=False) == (388, 388)
    assert valid_sizes(3, depth=4, padding=False) == (4, 4)


def test_padded_unet_keeps_the_size_and_needs_multiples_of_two_to_the_depth() -> None:
    model = build_model("unet", num_classes=3, padding=True, depth=3, **TINY).eval()
    assert model.margin == 0
    assert model(torch.randn(2, 3, 40, 24))["out"].shape == (2, 3, 40, 24)
    with pytest.raises(UserError, match=r"multiples of 8; width 30: nearest valid 24 or 32"):
        model(torch.zeros(1, 3, 40, 30))
    assert valid_sizes(5, depth=3, padding=True) == (8, 8)


def test_depth_widths_and_input_channels_shape_the_net() -> None:
    model = build_model("unet", num_classes=5, in_channels=1, depth=2, base_width=8, width=0.5)
    assert len(model.encoder) == 2 and len(model.decoder) == 2 and len(model.up_convs) == 2
    assert [level[0].out_channels for level in model.encoder] == [4, 8]
    assert model.bottleneck[0].out_channels == 16
    assert model.encoder[0][0].in_channels == 1 and model.classifier.out_channels == 5
    assert all(up.kernel_size == (2, 2) and up.stride == (2, 2) for up in model.up_convs)


def test_batch_norm_replaces_the_conv_biases() -> None:
    plain = build_model("unet", num_classes=2, **TINY)
    with_bn = build_model("unet", num_classes=2, batch_norm=True, **TINY)
    bns = [m for m in with_bn.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 18 and not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    three_by_three = [m for m in with_bn.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert all(m.bias is None for m in three_by_three)
    # each BN adds weight + bias where its conv loses one bias
    assert _params(with_bn) - _params(plain) == sum(bn.num_features for bn in bns)


def test_channels_last_gives_the_same_logits() -> None:
    model = build_model("unet", num_classes=3, depth=2, batch_norm=True, **TINY).eval()
    x = torch.randn(1, 3, 20, 28)
    expected = model(x)["out"]
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))["out"]
    assert torch.allclose(out, expected, atol=1e-5)


def test_training_mode_returns_only_out() -> None:
    model = build_model("unet", num_classes=3, padding=True, depth=2, **TINY).train()
    assert model.aux_classifier is None
    assert set(model(torch.randn(2, 3, 16, 16))) == {"out"}


def test_weights_load_from_a_local_file(tmp_path: Path) -> None:
    source = build_model("unet", num_classes=2, depth=2, **TINY).eval()
    path = tmp_path / "unet.pt"
    torch.save(source.state_dict(), path)
    loaded = build_model("unet", num_classes=2, depth=2, weights=str(path), **TINY).eval()
    x = torch.randn(1, 3, 12, 12)
    assert torch.equal(loaded(x)["out"], source(x)["out"])
    with pytest.raises(UserError, match="does not fit this model"):
        build_model("unet", num_classes=2, depth=3, weights=str(path), **TINY)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="is not a readable state dict"):
        build_model("unet", num_classes=2, weights=str(tmp_path / "junk.pt"), **TINY)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"depth": 0}, "option .depth. = 0 is below the minimum 1"),
        ({"in_channels": 2.5}, "option .in_channels. must be of type int, got 2.5"),
        ({"dropout": 1.0}, "option .dropout. = 1.0 must be less than 1"),
        ({"width": -1.0}, "option .width. = -1.0 must be greater than 0"),
        ({"paddding": True}, "did you mean 'padding'"),
    ],
)
def test_bad_options_are_user_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_model("unet", num_classes=2, **options)
