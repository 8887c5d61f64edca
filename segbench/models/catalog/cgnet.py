"""Catalog entry of CGNet (Wu et al., Context Guided Network), torch-free.

The options are the factors of the paper's ablation tables (F_sur, F_glo,
input injection, PReLU vs ReLU, M/N depth, LRL vs GRL, 1x1 conv after the
channel-wise convs); defaults are the official code's CGNet_M3N21.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segbench.models.catalog import ModelEntry, OptionSpec


def _check(o: Mapping[str, Any]) -> str | None:
    """The combinations a CGNet cannot be built with (build_cgnet refuses them through this entry)."""
    if not (o["f_loc"] or o["f_sur"]):
        return "needs f_loc or f_sur (or both): with neither a CG block has no joint feature"
    for name in ("dilation", "reduction"):
        if len(o[name]) != 2:
            return f"{name} is two integers (stage 2, stage 3), not {list(o[name])}"
    return None


ENTRIES: list[ModelEntry] = [
    ModelEntry(
        name="cgnet",
        builder="segbench.models.cgnet:build_cgnet",
        summary="CGNet: light-weight net of Context Guided blocks (local, surrounding and global context)",
        paper="Wu, Tang, Zhang, Zhang. CGNet: A Light-weight Context Guided Network for Semantic "
        "Segmentation. arXiv 1811.08201",
        options=(
            OptionSpec("M", 3, "CG blocks in stage 2 (including its down-sampling block)", "int", minimum=1),
            OptionSpec("N", 21, "CG blocks in stage 3 (including its down-sampling block)", "int", minimum=1),
            OptionSpec(
                "dilation", (2, 4), "dilation of F_sur in stage 2 and stage 3", "list[int]", minimum=1
            ),
            OptionSpec(
                "reduction",
                (8, 16),
                "F_glo (SE-like) channel reduction in stage 2 and 3",
                "list[int]",
                minimum=1,
            ),
            OptionSpec("f_loc", True, "F_loc: 3x3 channel-wise conv (local feature)", "bool"),
            OptionSpec("f_sur", True, "F_sur: 3x3 dilated channel-wise conv (surrounding context)", "bool"),
            OptionSpec("f_glo", True, "F_glo: global context re-weighting of the joint feature", "bool"),
            OptionSpec(
                "input_injection", True, "concatenate the down-sampled image into stages 2 and 3", "bool"
            ),
            OptionSpec("activation", "prelu", "activation after every BN", "str", ("prelu", "relu")),
            OptionSpec(
                "residual",
                "grl",
                "grl: input + F_glo(joint) (the official code); lrl: F_glo(input + joint)",
                "str",
                ("lrl", "grl"),
            ),
            OptionSpec(
                "conv1x1_after_channelwise",
                False,
                "a 1x1 conv after F_loc and F_sur (depthwise-separable style; the paper drops it)",
                "bool",
            ),
            OptionSpec(
                "width",
                1.0,
                "channel multiplier of the 32/64/128 stage widths (1.0 = the paper)",
                "float",
                above=0,
            ),
            OptionSpec("weights", None, "local state-dict file (the official checkpoints load)", "file"),
        ),
        check=_check,
        params_note="CGNet_M3N21, 19 classes: 496,306 parameters (the official code)",
    )
]
