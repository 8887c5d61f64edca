"""Third-party-style models for the open-world tests: what users bring, as small as they get.

Library classes (``segmentation_models_pytorch:Unet``, ``transformers:SegformerForSemanticSegmentation``,
torchvision's builders) are named by their own import paths in the suites; this
module holds only what a library does not ship: a plain ``nn.Sequential``, a
one-channel (sigmoid) binary net, and a SegFormer factory taking ``num_labels``.
"""

from __future__ import annotations

from torch import nn


def sequential(num_classes: int, width: int = 8) -> nn.Sequential:
    """Returns a plain tensor at 1/2 of the input size (the adapter resizes it)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, num_classes, 1),
    )


def binary(width: int = 4) -> nn.Sequential:
    """One output channel, the foreground logit; takes no class count (the adapter checks it)."""
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 1))


def tiny_segformer(num_labels: int, hidden: int = 8) -> nn.Module:
    """A randomly initialised SegFormer (MiT with one block per stage), built from its config; no download."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(num_labels=num_labels, **tiny_segformer_config(hidden))
    return SegformerForSemanticSegmentation(config)


def tiny_segformer_config(hidden: int = 8) -> dict[str, object]:
    return {
        "hidden_sizes": [hidden, 2 * hidden, 2 * hidden, 2 * hidden],
        "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 1, 1, 1],
        "mlp_ratios": [2, 2, 2, 2],
        "decoder_hidden_size": 2 * hidden,
    }
