"""Peak memory: RSS growth on CPU that means something, inference vs. one training step."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from segbench.errors import UserError
from segbench.measure import measure_memory

MB = 1024 * 1024


class Scratch(nn.Module):
    """Allocates (and touches) four 8 MiB temporaries, alive together, in every forward.

    8 MiB is below glibc's largest mmap threshold: once freed, such blocks stay in the heap
    unless handed back, so a naive RSS measurement of a second run would see only part of them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scratch = [torch.ones(8 * MB // 4) for _ in range(4)]
        return {"out": self.conv(x) + sum(s[0] for s in scratch)}


class Deep(nn.Module):
    def __init__(self, width: int = 32, depth: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
        for _ in range(depth - 1):
            layers += [nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(width, 4, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(self.features(x))}


def test_cpu_peak_is_the_growth_of_the_step_every_time() -> None:
    model = Scratch()
    # Later measurements run after the 32 MiB was freed once: it must not hide in the heap.
    # RSS is counted in pages by per-CPU counters, so allow a few hundred KiB.
    for _ in range(3):
        stats = measure_memory(model, (1, 3, 8, 8))
        assert stats.rss_peak_bytes is not None and 31 * MB <= stats.rss_peak_bytes < 40 * MB
        # the tensors: four 8 MiB scratch buffers alive together, plus the small output
        assert 32 * MB <= stats.peak_bytes < 32 * MB + 4096
    assert stats.method == "profiler_tensor_peak" and stats.device == "cpu"
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert stats.resident_bytes == weights + 3 * 8 * 8 * 4
    assert json.loads(json.dumps(stats.to_dict()))["peak_bytes"] == stats.peak_bytes


def test_training_step_needs_more_and_leaves_the_model_untouched() -> None:
    model = Deep()
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    shape = (2, 3, 64, 64)
    inference = measure_memory(model, shape)
    train = measure_memory(model, shape, train_step=True)
    activation = 2 * 32 * 64 * 64 * 4  # one feature map: 1 MiB
    assert train.train_step and not inference.train_step
    assert train.peak_bytes > 5 * activation  # every layer's output is kept for backward
    assert train.peak_bytes > 2 * inference.peak_bytes
    params = sum(p.numel() * 4 for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    # resident: weights, buffers, input and SGD's momentum buffers (one per parameter)
    assert train.resident_bytes == 2 * params + buffers + 2 * 3 * 64 * 64 * 4
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_batch_norm_after_global_pooling_at_batch_one_says_what_to_do() -> None:
    model = Deep(width=4, depth=2)
    model.features.append(nn.AdaptiveAvgPool2d(1))
    model.features.append(nn.BatchNorm2d(4))
    with pytest.raises(UserError, match="batch size ≥ 2"):
        measure_memory(model, (1, 3, 16, 16), train_step=True)
    assert measure_memory(model, (2, 3, 16, 16), train_step=True).peak_bytes > 0


def test_a_plain_tensor_model_is_measured_and_a_wrong_class_count_is_refused() -> None:
    stats = measure_memory(nn.Conv2d(3, 2, 1), (2, 3, 8, 8), train_step=True, num_classes=2)
    assert stats.train_step and stats.resident_bytes > 0
    with pytest.raises(UserError, match=r"Conv2d .* returns 2 output channels but the dataset has 5 classes"):
        measure_memory(nn.Conv2d(3, 2, 1), (1, 3, 8, 8), num_classes=5)


_PEAKS = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from segbench.measure import measure_memory
from tests.test_measure_memory import Deep
torch.manual_seed(0)
model = Deep()
inference = measure_memory(model, (2, 3, 32, 32))
train = measure_memory(model, (2, 3, 32, 32), train_step=True)
print(json.dumps([inference.peak_bytes, train.peak_bytes, inference.rss_peak_bytes]))
"""


def test_cpu_tensor_peak_is_identical_in_separate_processes() -> None:
    """The figure memory verdicts use: the same model gives the same bytes in two fresh processes."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _PEAKS, root], capture_output=True, text=True, check=True, timeout=120
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(2)
    ]
    (inference, train, _), (inference2, train2, _) = runs
    assert inference == inference2 and train == train2
    assert train > inference > 0
