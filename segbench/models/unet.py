"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015).

The original (``padding=False``): every level is two unpadded 3x3 convolutions
with ReLU, followed by a 2x2 max-pool on the way down (64 -> 1024 channels over
``depth=4`` poolings); on the way up a 2x2 up-convolution halves the channels,
the skip features are centre-cropped to its size and concatenated, and two
unpadded 3x3 convolutions follow; a 1x1 convolution scores the classes. With 1
input channel and 2 classes it has 31,030,658 parameters. Drop-out sits at the
end of the contracting path, weights start as the paper's Gaussian with
std sqrt(2/N) (He's initialisation).

Output size. Unpadded convolutions shrink the map, so the paper predicts a
smaller output tile (388 x 388 for a 572 x 572 input) and extends the image by
mirroring for the border context (the overlap-tile strategy). ``forward``
does exactly that to return logits at the input resolution: it mirrors the
input by the network's margin (92 pixels a side at depth 4) and runs the
original network on it (:meth:`UNet.forward_tile` runs it on a raw tile).
The pooling only divides cleanly for output tiles of size ``4 + k * 2**depth``
(388 at depth 4), so other sizes are a UserError naming the nearest valid
ones. The padded variant (``padding=True``) keeps sizes through every
convolution and needs sizes divisible by ``2**depth``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.errors import UserError
from segbench.models.backbones.heads import check_num_classes
from segbench.models.catalog.unet import ENTRIES
from segbench.models.weights import load_weights

__all__ = ["UNet", "build_unet", "valid_sizes"]

_ENTRY = ENTRIES[0]


def _double_conv(in_channels: int, out_channels: int, padding: bool, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by (BN and) ReLU: one U-Net level."""
    layers: list[nn.Module] = []
    for index in range(2):
        layers.append(
            nn.Conv2d(
                in_channels if index == 0 else out_channels,
                out_channels,
                3,
                padding=int(padding),
                bias=not batch_norm,
            )
        )
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _centre_crop(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    top = (x.shape[-2] - size[0]) // 2
    left = (x.shape[-1] - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]


def margin(depth: int) -> int:
    """Pixels an unpadded U-Net of ``depth`` poolings loses on each side (92 at depth 4).

    Why this number: each level's two 3x3 convolutions lose 2 pixels a side at
    its own scale, on the way down and up, and a level at depth ``d`` counts
    ``2**d`` times: 2 * (2 * (2**depth - 1)) + 2 * 2**depth = 6 * 2**depth - 4.
    """
    return 6 * 2**depth - 4


def valid_sizes(size: int, depth: int, padding: bool) -> tuple[int, int]:
    """The valid input sizes nearest to ``size`` (below, above); equal when ``size`` is valid.

    Unpadded: output tiles of ``4 + k * 2**depth`` (the 2x2 poolings must divide
    evenly after each level's convolutions); padded: multiples of ``2**depth``.
    """
    step = 2**depth
    base = 0 if padding else 4
    low = base + max(0, (size - base) // step) * step
    low = max(low, step if padding else base)
    high = low if low >= size else low + step
    return low, high


class UNet(nn.Module):
    """The U-Net; see the module docstring for sizes and the overlap-tile input."""

    aux_classifier: None

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        depth: int = 4,
        base_width: int = 64,
        padding: bool = False,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.padding = padding
        widths = [base_width * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList()
        channels = in_channels
        for width in widths[:-1]:
            self.encoder.append(_double_conv(channels, width, padding, batch_norm))
            channels = width
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bottleneck = _double_conv(channels, widths[-1], padding, batch_norm)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.up_convs = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.up_convs.append(nn.ConvTranspose2d(2 * width, width, 2, stride=2))
            self.decoder.append(_double_conv(2 * width, width, padding, batch_norm))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        self.aux_classifier = None
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                # The paper: Gaussian with std sqrt(2/N), N = inputs of one unit.
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def margin(self) -> int:
        """Pixels lost on each side of a tile (0 when padded)."""
        return 0 if self.padding else margin(self.depth)

    def check_size(self, height: int, width: int) -> None:
        """UserError unless ``height x width`` is an output size this U-Net produces exactly."""
        bad = [
            (name, s)
            for name, s in (("height", height), ("width", width))
            if valid_sizes(s, self.depth, self.padding)[0] != s
        ]
        if not bad:
            return
        kind = "padded" if self.padding else "unpadded (original)"
        step = 2**self.depth
        rule = (
            f"multiples of {step}"
            if self.padding
            else f"4 + k * {step}, the tiles it predicts exactly (it mirrors {self.margin} px of context)"
        )
        details = "; ".join(f"{name} {s}: nearest valid {self._nearest(s)}" for name, s in bad)
        raise UserError(f"{kind} U-Net of depth {self.depth} needs input sizes {rule}; {details}")

    def _nearest(self, size: int) -> str:
        low, high = valid_sizes(size, self.depth, self.padding)
        return str(low) if low == high else f"{low} or {high}"

    def forward_tile(self, tile: torch.Tensor) -> torch.Tensor:
        """The network on a raw tile: logits smaller by ``2 * margin`` (572 -> 388 at depth 4)."""
        skips = []
        x = tile
        for level in self.encoder:
            x = level(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for up_conv, level, skip in zip(self.up_convs, self.decoder, reversed(skips), strict=True):
            x = up_conv(x)
            x = level(torch.cat([_centre_crop(skip, x.shape[-2:]), x], dim=1))
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_size(x.shape[-2], x.shape[-1])
        if self.margin:
            x = _mirror_pad(x, self.margin)
        return {"out": self.forward_tile(x)}


def _mirror_pad(x: torch.Tensor, amount: int) -> torch.Tensor:
    """Mirror ``amount`` pixels onto every side, as the paper extrapolates border context.

    Reflection adds fewer pixels than the map is wide, so small tiles are
    mirrored in steps, each reflecting the already extended map (valid tiles
    are at least 4 pixels, so every step adds at least 3).
    """
    while amount > 0:
        step = min(amount, x.shape[-2] - 1, x.shape[-1] - 1)
        x = F.pad(x, (step, step, step, step), mode="reflect")
        amount -= step
    return x


def build_unet(
    num_classes: int,
    *,
    padding: bool = False,
    batch_norm: bool = False,
    in_channels: int = 3,
    depth: int = 4,
    base_width: int = 64,
    width: float = 1.0,
    dropout: float = 0.5,
    weights: str | None = None,
) -> UNet:
    """The catalog's ``unet``; ``width`` scales ``base_width`` (1.0 = the paper's 64).

    Every option is checked by the catalog entry (types and ranges), so a direct
    call and a suite refuse the same values with the same messages.
    """
    check_num_classes(num_classes)
    _ENTRY.resolve(
        {
            "padding": padding,
            "batch_norm": batch_norm,
            "in_channels": in_channels,
            "depth": depth,
            "base_width": base_width,
            "width": width,
            "dropout": dropout,
            "weights": weights,
        }
    )
    model = UNet(
        num_classes,
        in_channels=in_channels,
        depth=depth,
        base_width=max(1, round(base_width * width)),
        padding=padding,
        batch_norm=batch_norm,
        dropout=dropout,
    )
    if weights is not None:
        load_weights(model, weights)
    return model
