"""Catalog entry of FCN (Long, Shelhamer & Darrell), torch-free.

One entry covers the paper's skip architectures (``variant`` 32s / 16s / 8s) on
the paper's VGG16 and on ResNet-50/101; with a ResNet and ``variant="32s"``,
``output_stride`` 8 is torchvision's dilated FCN (PSPNet's "FCN baseline").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segbench.models.catalog import MODEL_WEIGHTS, ModelEntry, OptionSpec


def _check(o: Mapping[str, Any]) -> str | None:
    """The combinations build_fcn refuses."""
    if o["backbone"] == "vgg16":
        if o["aux"]:
            return "aux needs a ResNet backbone (FCN on VGG16 has no auxiliary head; the paper has none)"
        if o["output_stride"] != 32:
            return f"FCN on VGG16 has output stride 32 only, not {o['output_stride']}"
        return None
    if o["pad100"] is not None:
        return "pad100 is the VGG16 FCN's 100-pixel padding; leave it unset for a ResNet backbone"
    if o["width"] != 1.0:
        return f"width={o['width']}: torchvision's ResNet has fixed widths; width scales the VGG16 FCN only"
    if o["variant"] != "32s" and o["output_stride"] != 32:
        return (
            f"variant '{o['variant']}' fuses undilated ResNet scores and needs output_stride 32, not "
            f"{o['output_stride']} (the dilated FCN is variant '32s')"
        )
    return None


ENTRIES: list[ModelEntry] = [
    ModelEntry(
        name="fcn",
        builder="segbench.models.fcn:build_fcn",
        summary="FCN-32s/16s/8s: skip fusion of pool4/pool3 scores with learned 2x upsampling",
        paper="Long, Shelhamer, Darrell. Fully Convolutional Networks for Semantic Segmentation. CVPR 2015",
        options=(
            OptionSpec(
                "backbone",
                "vgg16",
                "vgg16 (the paper: fc6/fc7 as 7x7 and 1x1 convs, 4096 wide) or a torchvision ResNet",
                "str",
                ("vgg16", "resnet50", "resnet101"),
            ),
            OptionSpec(
                "variant",
                "8s",
                "skip architecture: 32s (no skip), 16s (+pool4/layer3 scores), 8s (+pool3/layer2 scores)",
                "str",
                ("32s", "16s", "8s"),
            ),
            OptionSpec(
                "output_stride",
                32,
                "backbone stride; VGG16 has 32 only; ResNet 8/16 dilate layer3/4 (skips need 32)",
                "int",
                (8, 16, 32),
            ),
            OptionSpec(
                "pad100",
                None,
                "VGG16 only: the official 100-px padding of conv1_1 and Caffe crop offsets "
                "(None = True for VGG16); False = 'same' padding, fc6 padded by 3",
                "bool",
                (None, True, False),
            ),
            OptionSpec(
                "upsampling",
                "learned",
                "learned: 2x deconvs start bilinear and train (the paper); fixed: all bilinear, frozen "
                "(the official Caffe nets, lr_mult 0)",
                "str",
                ("learned", "fixed"),
            ),
            OptionSpec("aux", False, "ResNet only: torchvision's FCNHead on layer3 (training only)", "bool"),
            OptionSpec(
                "width",
                1.0,
                "channel multiplier of VGG16 and its fc6/fc7 (1.0 = the paper)",
                "float",
                above=0,
            ),
            MODEL_WEIGHTS,
        ),
        check=_check,
        params_note="FCN-8s VGG16, 21 classes: 134,489,759 parameters (the official Caffe net)",
    )
]
