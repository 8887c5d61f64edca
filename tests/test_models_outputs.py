"""The model-output adapter, the factory rule for library classes, and FLOPs traced through the adapter."""

from __future__ import annotations

import math
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segbench.config import EvalSettings
from segbench.engine.evaluate import evaluate
from segbench.engine.inference import predict_log_probs
from segbench.engine.loss import segmentation_loss
from segbench.errors import UserError
from segbench.measure import count_flops
from segbench.models import build_model
from segbench.models.outputs import forward_heads, model_heads
from tests import openworld_models

SIZE = (16, 20)


def logits(channels: int = 3, h: int = 16, w: int = 20, n: int = 2) -> torch.Tensor:
    return torch.randn(n, channels, h, w)


# --- the accepted forms ----------------------------------------------------------------------
def test_a_tensor_is_the_main_head() -> None:
    x = logits()
    (main,) = model_heads(x, SIZE, 3)
    assert main is x


def test_torchvisions_out_and_aux_mapping() -> None:
    out, aux = logits(), logits()
    assert model_heads({"out": out, "aux": aux}, SIZE, 3) == (out, aux)
    assert model_heads(OrderedDict(out=out), SIZE, 3) == (out,)


def test_hugging_face_logits_mapping_and_object_are_resized_bilinear() -> None:
    small = logits(h=4, w=5)
    expected = nn.functional.interpolate(small, size=SIZE, mode="bilinear", align_corners=False)
    for outputs in ({"logits": small, "loss": None}, SimpleNamespace(logits=small, hidden_states=None)):
        (main,) = model_heads(outputs, SIZE, 3)
        assert main.shape == (2, 3, *SIZE)
        torch.testing.assert_close(main, expected, rtol=0, atol=0)


def test_a_tuple_gives_main_then_aux_and_ignores_labels_and_features() -> None:
    main, aux = logits(), logits(h=8, w=10)
    labels = torch.randn(2, 3)  # smp's aux_params classification head
    features = torch.randn(2, 64, 4, 5)  # not the class count: not a head
    got = model_heads((main, labels, features, aux), SIZE, 3)
    assert len(got) == 2 and got[0] is main and got[1].shape == (2, 3, *SIZE)
    assert model_heads([labels, main], SIZE, 3) == (main,)


def test_one_channel_is_accepted_for_two_classes_only() -> None:
    (main,) = model_heads(logits(1), SIZE, 2)
    assert main.shape[1] == 1
    with pytest.raises(UserError, match="returns 1 output channels but the dataset has 3 classes"):
        model_heads(logits(1), SIZE, 3)


# --- what is refused --------------------------------------------------------------------------
def test_a_wrong_class_count_names_the_model_and_both_counts() -> None:
    model = nn.Conv2d(3, 5, 1)
    with pytest.raises(UserError) as err:
        forward_heads(model, torch.randn(1, 3, 8, 8), 21)
    message = str(err.value)
    assert "Conv2d (torch.nn.modules.conv.Conv2d)" in message
    assert "returns 5 output channels but the dataset has 21 classes" in message
    with pytest.raises(UserError, match="no 4-D tensor has 21 channels"):
        model_heads((logits(5), torch.randn(2, 21)), SIZE, 21, model="mine")
    with pytest.raises(UserError, match="returns 4 output channels but the dataset has 3 classes"):
        model_heads({"out": logits(3), "aux": logits(4)}, SIZE, 3)


def test_unreadable_outputs_say_what_is_accepted() -> None:
    with pytest.raises(UserError, match=r"keys \['masks'\] but neither 'out' nor 'logits'"):
        model_heads({"masks": logits()}, SIZE, 3)
    with pytest.raises(UserError, match="returned str; a model returns a tensor"):
        model_heads("oops", SIZE, 3)
    with pytest.raises(UserError, match="without 4-D logits"):
        model_heads((torch.randn(2, 3),), SIZE, 3)
    with pytest.raises(UserError, match=r"logits of shape \(2, 3, 16\); segmentation logits are 4-D"):
        model_heads(torch.randn(2, 3, 16), SIZE, 3)


# --- the binary (sigmoid) path ----------------------------------------------------------------
def test_a_sigmoid_logit_is_trained_with_bce_on_labelled_pixels() -> None:
    z = torch.randn(2, 1, 4, 4)
    target = torch.randint(0, 2, (2, 4, 4))
    target[0, 0] = 255
    keep = target != 255
    expected = nn.functional.binary_cross_entropy_with_logits(z[:, 0][keep], target[keep].float())
    torch.testing.assert_close(segmentation_loss((z,), target, None, 255), expected)


def test_flip_and_scales_average_sigmoid_probabilities() -> None:
    torch.manual_seed(0)
    model = openworld_models.binary().eval()
    images = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        z = model(images)
        zf = model(images.flip(-1)).flip(-1)
        got = predict_log_probs(model, images, (8, 8), flip=True, num_classes=2).exp()
    expected_fg = (torch.sigmoid(z) + torch.sigmoid(zf))[:, 0] / 2
    torch.testing.assert_close(got[:, 1], expected_fg)
    torch.testing.assert_close(got.sum(dim=1), torch.ones_like(got[:, 0]))


class _Constant(nn.Module):
    """Foreground probability 0.6 everywhere: 0.5 calls it all foreground, 0.7 all background."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.logit = nn.Parameter(torch.tensor(math.log(0.6 / 0.4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit.expand(x.shape[0], self.channels, *x.shape[-2:])


class _HalfMasks(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.zeros(8, 8, dtype=torch.long)
        mask[:, :4] = 1
        return torch.zeros(3, 8, 8), mask


def test_eval_threshold_decides_foreground_for_every_metric() -> None:
    low = evaluate(_Constant(), _HalfMasks(), 2, EvalSettings(threshold=0.5)).metrics
    high = evaluate(_Constant(), _HalfMasks(), 2, EvalSettings(threshold=0.7)).metrics
    assert low["fg_recall"] == 1.0 and low["fg_precision"] == 0.5 and low["pixel_acc"] == 0.5
    assert math.isnan(high["fg_precision"]) and high["fg_recall"] == 0.0 and high["pixel_acc"] == 0.5
    assert low["val_loss"] == pytest.approx(high["val_loss"])  # the threshold is no part of the loss


def test_a_threshold_on_a_softmax_model_is_an_error() -> None:
    with pytest.raises(UserError, match=r"eval.threshold=0.3 .* one-channel .* returns 2 channels"):
        evaluate(_Constant(channels=2), _HalfMasks(), 2, EvalSettings(threshold=0.3))


# --- factories as libraries spell them --------------------------------------------------------
def test_smp_unet_builds_from_its_yaml_options_with_classes() -> None:
    pytest.importorskip("segmentation_models_pytorch")
    model = build_model(
        "segmentation_models_pytorch:Unet", num_classes=4, encoder_name="resnet18", encoder_weights=None
    ).eval()
    with torch.inference_mode():
        (main,) = forward_heads(model, torch.randn(1, 3, 32, 32), 4)
    assert main.shape == (1, 4, 32, 32)
    binary = build_model(
        "segmentation_models_pytorch:Unet",
        num_classes=2,
        encoder_name="resnet18",
        encoder_weights=None,
        classes=1,
    )
    assert binary.segmentation_head[0].out_channels == 1  # an option given wins over the class count


def test_hugging_face_classes_are_built_from_their_config_and_factories_taking_none_are_called_bare() -> None:
    pytest.importorskip("transformers")
    model = build_model(
        "transformers:SegformerForSemanticSegmentation",
        num_classes=5,
        **openworld_models.tiny_segformer_config(),
    )
    assert model.config.num_labels == 5 and model.config.depths == [1, 1, 1, 1]
    assert build_model("tests.openworld_models:binary", num_classes=2)[-1].out_channels == 1
    assert build_model("tests.openworld_models:tiny_segformer", num_classes=3).config.num_labels == 3
    with pytest.raises(UserError, match=r"cannot take options .*widht=3.*; it takes width"):
        build_model("tests.openworld_models:binary", num_classes=2, widht=3)


# --- FLOPs through the adapter ----------------------------------------------------------------
#: FlopCounterMode's operators that are convolutions and matrix products (2 FLOPs per multiply-add)
_CONV_MATMUL = {"convolution", "_convolution", "mm", "addmm", "bmm", "baddbmm"}


def _flop_counter_macs(model: nn.Module, shape: tuple[int, ...], num_classes: int) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward_heads(model, torch.randn(shape), num_classes)
    counts = counter.get_flop_counts()["Global"]
    return sum(v for op, v in counts.items() if op.__name__.split(".")[0] in _CONV_MATMUL) // 2


@pytest.mark.parametrize("which", ["smp-unet", "segformer"])
def test_traced_macs_agree_with_torchs_flop_counter(which: str) -> None:
    if which == "smp-unet":
        pytest.importorskip("segmentation_models_pytorch")
        model = build_model(
            "segmentation_models_pytorch:Unet",
            num_classes=3,
            encoder_name="resnet18",
            encoder_weights=None,
            encoder_depth=3,
            decoder_channels=[16, 8, 8],
        )
    else:
        pytest.importorskip("transformers")
        model = openworld_models.tiny_segformer(num_labels=3)
    model.eval()
    shape = (1, 3, 64, 64)
    counted = count_flops(model, shape, num_classes=3)
    assert counted.macs == _flop_counter_macs(model, shape, 3) > 0
    if which == "segformer":
        assert counted.by_operator.get("upsample_bilinear2d", 0) > 0  # 1/4-size logits resized in the trace
        assert set(counted.by_module) >= {"segformer", "decode_head"}  # the model's own module names


def test_aux_heads_in_a_tuple_are_counted_only_with_include_aux() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.main = nn.Conv2d(3, 2, 1)
            self.extra = nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.main(x), self.extra(x)

    model = TwoHeads().eval()
    without = count_flops(model, (1, 3, 8, 8), num_classes=2)
    with_aux = count_flops(model, (1, 3, 8, 8), num_classes=2, include_aux=True)
    assert without.macs == 3 * 2 * 64
    assert with_aux.macs == 3 * 2 * 64 + 3 * 2 * 9 * 64
