"""Catalog entry of U-Net (Ronneberger, Fischer & Brox), torch-free."""

from __future__ import annotations

from segbench.models.catalog import MODEL_WEIGHTS, ModelEntry, OptionSpec

ENTRIES: list[ModelEntry] = [
    ModelEntry(
        name="unet",
        builder="segbench.models.unet:build_unet",
        summary="U-Net: contracting/expanding path with 2x2 up-convs and concatenated skips",
        paper="Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
        "MICCAI 2015",
        options=(
            OptionSpec(
                "padding",
                False,
                "False = the original unpadded 3x3 convs with centre-cropped skips (overlap-tile input); "
                "True = padded convs, output tile = input tile",
                "bool",
                (True, False),
            ),
            OptionSpec("batch_norm", False, "BatchNorm after every 3x3 conv (the original has none)", "bool"),
            OptionSpec(
                "in_channels", 3, "input channels (the original: 1, grey-scale EM images)", "int", minimum=1
            ),
            OptionSpec(
                "depth", 4, "number of 2x2 max-pool downsamplings (the original: 4)", "int", minimum=1
            ),
            OptionSpec(
                "base_width",
                64,
                "channels of the first level, doubled per level (64 -> 1024)",
                "int",
                minimum=1,
            ),
            OptionSpec("width", 1.0, "channel multiplier on base_width (1.0 = the paper)", "float", above=0),
            OptionSpec(
                "dropout",
                0.5,
                "drop-out at the end of the contracting path (the paper: 0.5)",
                "float",
                minimum=0,
                below=1,
            ),
            MODEL_WEIGHTS,
        ),
        params_note="original (1 input channel, 2 classes, no BN): 31,030,658 parameters",
    )
]
