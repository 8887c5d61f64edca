"""Reference entries: torchvision's segmentation zoo, torch-free.

Why: a benchmark needs a yardstick that is not segbench's own code. These are
torchvision's models exactly (``weights=None, weights_backbone=None``; a local
``weights`` file in torchvision's own state-dict layout loads as is), wrapped
only so that ``"aux"`` is returned while training, as segbench's models do.
"""

from __future__ import annotations

from segbench.models.catalog import ModelEntry, OptionSpec

_PAPERS = {
    "fcn": "Long, Shelhamer, Darrell. Fully Convolutional Networks for Semantic Segmentation. CVPR 2015",
    "deeplabv3": "Chen, Papandreou, Schroff, Adam. Rethinking Atrous Convolution for Semantic Image "
    "Segmentation. arXiv 1706.05587",
    "lraspp": "Howard et al. Searching for MobileNetV3. ICCV 2019",
}

# (architecture, paper key, summary, torchvision's published num_params with its default heads)
_MODELS: tuple[tuple[str, str, str, int], ...] = (
    ("fcn_resnet50", "fcn", "torchvision FCN, dilated ResNet-50 (output stride 8)", 35_322_218),
    ("fcn_resnet101", "fcn", "torchvision FCN, dilated ResNet-101 (output stride 8)", 54_314_346),
    (
        "deeplabv3_resnet50",
        "deeplabv3",
        "torchvision DeepLab v3, dilated ResNet-50 (output stride 8)",
        42_004_074,
    ),
    (
        "deeplabv3_resnet101",
        "deeplabv3",
        "torchvision DeepLab v3, dilated ResNet-101 (output stride 8)",
        60_996_202,
    ),
    ("deeplabv3_mobilenet_v3_large", "deeplabv3", "torchvision DeepLab v3, MobileNetV3-Large", 11_029_328),
    ("lraspp_mobilenet_v3_large", "lraspp", "torchvision Lite R-ASPP, MobileNetV3-Large", 3_221_538),
)


def _entry(arch: str, paper: str, summary: str, num_params: int) -> ModelEntry:
    has_aux = not arch.startswith("lraspp")
    aux_help = (
        "torchvision's auxiliary FCNHead on the stride-16 features (training only)"
        if has_aux
        else "torchvision's LRASPP has no auxiliary head: only false"
    )
    with_heads = "with aux, " if has_aux else ""
    return ModelEntry(
        name=f"torchvision.{arch}",
        builder=f"segbench.models.torchvision_zoo:build_{arch}",
        summary=summary,
        paper=_PAPERS[paper],
        options=(
            OptionSpec("aux", has_aux, aux_help, "bool", (True, False) if has_aux else (False,)),
            OptionSpec("weights", None, "local torchvision state-dict file (nothing downloads)", "file"),
        ),
        params_note=f"{with_heads}21 classes: {num_params:,} parameters (torchvision's published num_params)",
    )


ENTRIES: list[ModelEntry] = [_entry(*model) for model in _MODELS]
