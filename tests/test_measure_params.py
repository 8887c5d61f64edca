"""Parameter counts: total, trainable, aux head, per top-level module."""

from __future__ import annotations

import json

import torch
from torch import nn
from torchvision.models.segmentation import FCN_ResNet50_Weights, fcn_resnet50

from segbench.measure import count_params


def test_fcn_resnet50_matches_torchvision_and_splits_out_the_aux_head() -> None:
    model = fcn_resnet50(weights=None, weights_backbone=None, aux_loss=True, num_classes=21)
    counts = count_params(model)
    assert counts.total == FCN_ResNet50_Weights.DEFAULT.meta["num_params"]
    assert counts.aux == sum(p.numel() for p in model.aux_classifier.parameters())
    assert counts.total_without_aux == counts.total - counts.aux
    assert list(counts.by_module) == ["backbone", "classifier", "aux_classifier"]
    assert sum(counts.by_module.values()) == counts.total
    assert counts.by_module["aux_classifier"] == counts.aux


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3)  # 4*3*9 + 4 = 112
        self.classifier = nn.Conv2d(4, 2, 1)  # 8 + 2 = 10
        self.aux_classifier = nn.Conv2d(4, 2, 1)  # 10
        self.scale = nn.Parameter(torch.ones(3))  # a root parameter is its own entry

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(self.backbone(x))}


def test_trainable_and_by_module_on_a_partly_frozen_model() -> None:
    model = Net()
    model.backbone.requires_grad_(False)
    model.aux_classifier.bias.requires_grad_(False)
    counts = count_params(model)
    assert counts.by_module == {"backbone": 112, "classifier": 10, "aux_classifier": 10, "scale": 3}
    assert counts.total == 135
    assert counts.trainable == 135 - 112 - 2
    assert counts.aux == 10
    assert counts.trainable_without_aux == 135 - 112 - 10
    assert json.loads(json.dumps(counts.to_dict()))["by_module"] == counts.by_module


def test_shared_weights_are_counted_once_and_not_as_aux() -> None:
    model = Net()
    model.aux_classifier = model.classifier  # the same module under two names
    counts = count_params(model)
    assert counts.total == 125
    assert counts.aux == 0
    assert counts.total_without_aux == 125


def test_disabled_or_missing_aux_head_counts_zero() -> None:
    model = Net()
    model.aux_classifier = None
    assert count_params(model).aux == 0
    assert count_params(nn.Conv2d(3, 4, 1)).aux == 0
