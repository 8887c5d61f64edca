"""Catalog entry of PSPNet (Zhao et al., CVPR 2017), torch-free.

The options are the ablation factors of the paper's Table 1 (``ppm``, ``bins``,
``pooling``, ``dim_reduction``) and Table 2 (``aux``; its weight is
``train.aux_weight``), plus the backbone and its output stride.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segbench.models.backbones import BACKBONES
from segbench.models.catalog import BACKBONE_WEIGHTS, BACKBONE_WIDTH, ModelEntry, OptionSpec


def _check(o: Mapping[str, Any]) -> str | None:
    """The combinations build_pspnet refuses."""
    return "bins needs at least one pyramid level, e.g. [1, 2, 3, 6]" if not o["bins"] else None


ENTRIES: list[ModelEntry] = [
    ModelEntry(
        name="pspnet",
        builder="segbench.models.pspnet:build_pspnet",
        summary="PSPNet: dilated backbone + pyramid pooling module (PPM), deep supervision on res4",
        paper="Zhao, Shi, Qi, Wang, Jia. Pyramid Scene Parsing Network. CVPR 2017 (arXiv 1612.01105)",
        options=(
            OptionSpec(
                "backbone",
                "resnet50",
                "feature extractor; squeezenet1_1 = torchvision's SqueezeNet 1.1 features (the quickstart)",
                "str",
                BACKBONES,
            ),
            OptionSpec(
                "output_stride",
                8,
                "8 (the paper: res4/res5 dilated by 2/4), 16 or 32; squeezenet1_1 supports 8 and 16 (native)",
                "int",
                (8, 16, 32),
            ),
            OptionSpec(
                "ppm", True, "pyramid pooling module; False = the dilated-FCN baseline of Table 1", "bool"
            ),
            OptionSpec(
                "bins",
                [1, 2, 3, 6],
                "pyramid levels (bins x bins pooled grids), e.g. [1] or [1, 2, 3, 6]",
                "list[int]",
                minimum=1,
            ),
            OptionSpec("pooling", "avg", "pooling of the pyramid levels", "str", ("avg", "max")),
            OptionSpec(
                "dim_reduction",
                True,
                "1x1 conv + BN + ReLU to in_channels/len(bins) per level (DR); False = pooled features as they are",
                "bool",
            ),
            OptionSpec("aux", True, "auxiliary head on res4 (3x3 conv 256, training only)", "bool"),
            OptionSpec(
                "deep_stem",
                None,
                "ResNet stem: True = three 3x3 convs (official PSPNet), False = torchvision's 7x7; "
                "None = True for ResNets; other backbones keep their own stem",
                "bool",
                (None, True, False),
            ),
            BACKBONE_WIDTH,
            BACKBONE_WEIGHTS,
        ),
        check=_check,
        params_note=(
            "ResNet-50 (deep stem), 150 classes: 49,180,908 parameters with the aux head (the official "
            "semseg PSPNet50), 46,782,550 without; SqueezeNet 1.1: 6,411,116 / 3,788,652 without PPM"
        ),
    )
]
