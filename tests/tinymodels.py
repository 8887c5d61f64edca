"""Tiny import-path models for the end-to-end tests (fast on one CPU core)."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


class TinySegNet(nn.Module):
    """Two strided convs and a classifier; ``fail`` makes training raise, or ``crash`` its process.

    ``crash_once`` crashes only where no ``crashed_once`` file is in the working
    directory yet (it leaves one): a worker death that a re-run gets past.
    """

    def __init__(self, num_classes: int, width: int = 8, fail: str | None = None) -> None:
        super().__init__()
        self.fail = fail
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.fail == "train" and self.training:
            raise RuntimeError("deliberate failure while training")
        if self.fail == "crash" and self.training:
            os._exit(3)  # a segfault or the OOM killer: the worker is gone, nothing raised
        if self.fail == "crash_once" and self.training and not os.path.exists("crashed_once"):
            open("crashed_once", "w").close()
            os._exit(3)
        logits = self.classifier(self.features(x))
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def tiny_segnet(num_classes: int, width: int = 8, fail: str | None = None) -> TinySegNet:
    return TinySegNet(num_classes, width=width, fail=fail)
