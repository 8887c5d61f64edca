"""Reference entries: torchvision's segmentation zoo under segbench's output convention."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import get_model_weights
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large

from segbench.errors import UserError
from segbench.models import build_model, entries

# torchvision's published num_params (21 classes, aux heads on where the model has one)
PUBLISHED = {
    "fcn_resnet50": 35_322_218,
    "fcn_resnet101": 54_314_346,
    "deeplabv3_resnet50": 42_004_074,
    "deeplabv3_resnet101": 60_996_202,
    "deeplabv3_mobilenet_v3_large": 11_029_328,
    "lraspp_mobilenet_v3_large": 3_221_538,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_catalog_names_the_six_reference_models() -> None:
    names = {entry.name for entry in entries() if entry.name.startswith("torchvision.")}
    assert names == {f"torchvision.{arch}" for arch in PUBLISHED}


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_parameter_counts_match_torchvisions_published_num_params(arch: str) -> None:
    published = next(iter(get_model_weights(arch))).meta["num_params"]
    assert published == PUBLISHED[arch]
    with torch.device("meta"):
        model = build_model(f"torchvision.{arch}", num_classes=21)
        assert _params(model) == published
        if not arch.startswith("lraspp"):
            without_aux = build_model(f"torchvision.{arch}", num_classes=21, aux=False)
            assert model.aux_classifier is not None and without_aux.aux_classifier is None
            assert _params(model) - _params(without_aux) == _params(model.aux_classifier)


def test_aux_is_returned_only_while_training() -> None:
    model = build_model("torchvision.deeplabv3_mobilenet_v3_large", num_classes=3)
    assert "aux_classifier" in dict(model.named_children())
    out = model.train()(torch.randn(2, 3, 40, 56))
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == out["aux"].shape == (2, 3, 40, 56)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 40, 56))
    assert set(out) == {"out"} and out["out"].shape == (1, 3, 40, 56)


def test_torchvisions_own_weights_files_load_and_give_torchvisions_logits(tmp_path: Path) -> None:
    reference = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4).eval()
    torch.save(reference.state_dict(), tmp_path / "lraspp.pth")
    model = build_model(
        "torchvision.lraspp_mobilenet_v3_large", num_classes=4, weights=str(tmp_path / "lraspp.pth")
    )
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x)["out"], reference(x)["out"], atol=1e-6)


def test_a_file_with_an_aux_head_loads_into_a_model_without_one(tmp_path: Path) -> None:
    # torchvision publishes its weights with the aux head; aux=False drops those keys only.
    with_aux = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3, aux_loss=True)
    torch.save(with_aux.state_dict(), tmp_path / "deeplab.pth")
    model = build_model(
        "torchvision.deeplabv3_mobilenet_v3_large",
        num_classes=3,
        aux=False,
        weights=str(tmp_path / "deeplab.pth"),
    )
    head = "classifier.4.weight"
    assert torch.equal(model.state_dict()[head], with_aux.state_dict()[head])
    with pytest.raises(UserError, match="does not fit this model"):
        build_model(
            "torchvision.deeplabv3_mobilenet_v3_large", num_classes=5, weights=str(tmp_path / "deeplab.pth")
        )


def test_channels_last_forward() -> None:
    model = build_model("torchvision.lraspp_mobilenet_v3_large", num_classes=3).eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        expected = model(x)["out"]
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))["out"]
    assert out.shape == (1, 3, 64, 48) and torch.allclose(out, expected, atol=1e-5)


def test_lraspp_has_no_aux_head_to_turn_on() -> None:
    with pytest.raises(UserError, match="aux"):
        build_model("torchvision.lraspp_mobilenet_v3_large", num_classes=3, aux=True)
    from segbench.models.torchvision_zoo import build_reference

    with pytest.raises(UserError, match="has no auxiliary head"):
        build_reference("lraspp_mobilenet_v3_large", 3, aux=True)
    with pytest.raises(UserError, match="did you mean 'torchvision.fcn_resnet50'"):
        build_model("torchvision.fcn_resnet5", num_classes=3)
