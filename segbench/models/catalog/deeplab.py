"""Catalog entries of DeepLab v3 and v3+, torch-free.

The options are the factors of the papers' ablations: output stride (v3 Table 1,
v3+ Table 3), Multi-Grid (v3 Table 3), ASPP rates and image pooling (v3 Table 5),
and for v3+ the decoder (Table 3), the low-level projection width (Table 1), the
decoder's conv structure and taps (Table 2) and separable convs (Table 5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from segbench.models.backbones import BACKBONES
from segbench.models.catalog import BACKBONE_WEIGHTS, BACKBONE_WIDTH, ModelEntry, OptionSpec

#: ``decoder_convs`` in the paper's notation: KxK_C[xN].
DECODER_CONVS = re.compile(r"^(?P<kernel>[13])x(?P=kernel)_(?P<channels>\d+)(?:x(?P<count>\d+))?$")


def parse_decoder_convs(spec: Any) -> tuple[int, int, int]:
    """``"3x3_256x2"`` as (kernel, channels, count) = (3, 256, 2), the paper's [3x3, 256] x 2.

    One parser for the catalog's load-time check and the builder, so both refuse the
    same strings with the same message (a ValueError; each reports it its own way).
    """
    match = DECODER_CONVS.match(spec) if isinstance(spec, str) else None
    if match is None or int(match["channels"]) < 1 or int(match["count"] or 1) < 1:
        raise ValueError(
            f"decoder_convs {spec!r} is not KxK_C or KxK_CxN (K 1 or 3, C channels, N convs), e.g. "
            "'3x3_256x2' (default), '3x3_256', '3x3_256x3', '3x3_128', '1x1_256'"
        )
    return int(match["kernel"]), int(match["channels"]), int(match["count"] or 1)


def _check(o: Mapping[str, Any]) -> str | None:
    """The combinations the DeepLab builders refuse."""
    stride = o["output_stride"]
    odd = [r for r in o["aspp_rates"] if (r * 16) % stride]
    if odd:
        return (
            f"ASPP rate {odd[0]} (given at output stride 16) has no integer equivalent at output stride "
            f"{stride}; use rates divisible by {stride // 16}"
        )
    if "decoder_convs" in o:
        try:
            parse_decoder_convs(o["decoder_convs"])
        except ValueError as exc:
            return str(exc)
    return None


_PAPER_V3 = "Chen, Papandreou, Schroff, Adam. Rethinking Atrous Convolution for Semantic Image Segmentation (arXiv 1706.05587)"
_PAPER_V3PLUS = (
    "Chen, Zhu, Papandreou, Schroff, Adam. Encoder-Decoder with Atrous Separable Convolution for "
    "Semantic Image Segmentation. ECCV 2018 (arXiv 1802.02611)"
)


def _encoder_options() -> tuple[OptionSpec, ...]:
    return (
        OptionSpec(
            "backbone",
            "resnet101",
            "feature extractor (the papers: resnet101; v3+ also xception65, mobilenet_v2)",
            "str",
            BACKBONES,
        ),
        OptionSpec(
            "output_stride",
            16,
            "backbone stride; at eval time, eval.output_stride switches a trained model (train 16, eval 8)",
            "int",
            (8, 16, 32),
        ),
        OptionSpec(
            "aspp_rates",
            [6, 12, 18],
            "atrous rates of the ASPP 3x3 branches at output stride 16 (doubled at 8, halved at 32)",
            "list[int]",
            minimum=1,
        ),
        OptionSpec("image_pooling", True, "ASPP's image-level (global average pooling) branch", "bool"),
        OptionSpec(
            "multi_grid",
            None,
            "unit rates of the last block (ResNet layer4, Xception exit flow), e.g. [1, 2, 4]; "
            "None = (1, 2, 4) for ResNets (v3's default), none for other backbones",
            "list[int]",
            minimum=1,
        ),
    )


def _common_options() -> tuple[OptionSpec, ...]:
    return (
        OptionSpec(
            "aux", False, "auxiliary head on the stride-16 stage (3x3 conv 256, training only)", "bool"
        ),
        OptionSpec(
            "deep_stem",
            None,
            "ResNet stem: True = three 3x3 convs (PSPNet's / TF's resnet_v1_beta), False or None = torchvision's 7x7",
            "bool",
            (None, True, False),
        ),
        BACKBONE_WIDTH,
        BACKBONE_WEIGHTS,
    )


ENTRIES: list[ModelEntry] = [
    ModelEntry(
        name="deeplabv3",
        builder="segbench.models.deeplab:build_deeplabv3",
        summary="DeepLab v3: dilated backbone + ASPP with image pooling, bilinear upsampling of the logits",
        paper=_PAPER_V3,
        options=_encoder_options() + _common_options(),
        check=_check,
        params_note=(
            "ResNet-101, 21 classes: 58,040,661 parameters; with aux 60,405,866 = torchvision's "
            "deeplabv3_resnet101 (60,996,202) less its extra 3x3 conv + BN after ASPP"
        ),
    ),
    ModelEntry(
        name="deeplabv3plus",
        builder="segbench.models.deeplab:build_deeplabv3plus",
        summary="DeepLab v3+: DeepLab v3 encoder + decoder over stride-4 low-level features",
        paper=_PAPER_V3PLUS,
        options=_encoder_options()
        + (
            OptionSpec(
                "decoder", True, "the decoder; False = bilinear upsampling of the logits (DeepLab v3)", "bool"
            ),
            OptionSpec(
                "low_level_channels",
                48,
                "width of the 1x1 projection of low-level features (Table 1)",
                "int",
                minimum=1,
            ),
            OptionSpec(
                "decoder_convs",
                "3x3_256x2",
                "refinement after the concatenation, KxK_C[xN] = N convs KxK, C wide (Table 2): "
                "3x3_256x2, 3x3_256, 3x3_256x3, 3x3_128, 1x1_256",
                "str",
            ),
            OptionSpec(
                "low_level",
                "conv2",
                "decoder taps: conv2 (stride 4) or conv2+conv3 (stride 8 then 4, refined at each)",
                "str",
                ("conv2", "conv2+conv3"),
            ),
            OptionSpec(
                "separable",
                False,
                "depthwise-separable convs in ASPP and decoder (Table 5's SC)",
                "bool",
            ),
        )
        + _common_options(),
        check=_check,
        params_note="ResNet-101, 21 classes: 59,344,309 parameters; Xception-65 with separable convs: 41,055,413",
    ),
]
