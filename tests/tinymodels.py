"""Tiny import-path models for the end-to-end tests (fast on one CPU core)."""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from torch import nn


class TinySegNet(nn.Module):
    """Two strided convs and a classifier; ``fail`` makes training raise, or ``crash`` its process.

    ``crash_once`` crashes only where no ``crashed_once`` file is in the working
    directory yet (it leaves one): a worker death that a re-run gets past.

    For the fault tests: ``sleep`` seconds per forward make a job slow enough to be
    killed mid-way, and ``trace`` names a file that gets a ``t`` (training) or ``e``
    (eval mode: latency, evaluation) per forward, so a test sees how far a job is.
    """

    def __init__(
        self,
        num_classes: int,
        width: int = 8,
        fail: str | None = None,
        sleep: float = 0.0,
        trace: str | None = None,
    ) -> None:
        super().__init__()
        self.fail = fail
        self.sleep = sleep
        self.trace = trace
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
        if self.trace is not None:
            with open(self.trace, "a") as fh:
                fh.write("t" if self.training else "e")
        if self.sleep:
            time.sleep(self.sleep)
        logits = self.classifier(self.features(x))
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def tiny_segnet(
    num_classes: int,
    width: int = 8,
    fail: str | None = None,
    sleep: float = 0.0,
    trace: str | None = None,
) -> TinySegNet:
    return TinySegNet(num_classes, width=width, fail=fail, sleep=sleep, trace=trace)
