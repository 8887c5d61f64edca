"""Joint image/mask transforms: the training augmentation and the evaluation preprocessing.

Training follows the reference implementations (PSPNet, DeepLab): random scale,
pad with the ignore label to the crop size, random crop, horizontal flip,
optional photometric jitter, ImageNet normalisation. Evaluation only normalises:
the network sees the image at its own resolution and the mask stays the original
label map, because the papers evaluate against the label map as published.

Randomness comes from torch's global generator, so ``torch.manual_seed`` plus the
DataLoader's per-worker seeding decide every augmentation, and a resumed run
restores it with the rest of the RNG state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from segbench.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


@dataclass(frozen=True)
class TrainAugment:
    """The training augmentation.

    ``crop_size`` is the square training crop; None crops to each sample's own
    size (the diagnostic dataset's images are one size, so batches still stack).
    ``scale_range`` bounds the random rescale factor; ``photometric`` adds
    brightness / contrast / saturation jitter.
    """

    crop_size: int | None
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    photometric: bool = False

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise UserError(
                f"train.scale_range must be two positive numbers, low <= high; got {self.scale_range}"
            )
        if self.crop_size is not None and self.crop_size < 1:
            raise UserError(f"train.crop_size must be a positive number of pixels, got {self.crop_size}")


def to_unit_image(image_hwc_uint8: object) -> Tensor:
    """``uint8 [H, W, 3]`` (numpy) → ``float32 [3, H, W]`` in [0, 1]."""
    tensor = torch.from_numpy(image_hwc_uint8).permute(2, 0, 1)  # type: ignore[arg-type]
    return tensor.to(torch.float32).div_(255.0)


def normalize(image: Tensor) -> Tensor:
    """ImageNet mean/std normalisation of a ``[3, H, W]`` image in [0, 1] (in place)."""
    return image.sub_(_MEAN).div_(_STD)


def denormalize(image: Tensor) -> Tensor:
    """The inverse of :func:`normalize`: back to [0, 1] (clamped), for pictures."""
    return (image * _STD + _MEAN).clamp_(0.0, 1.0)


def display_image(image: Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """A normalised ``[3, H, W]`` image as the ``uint8 [h, w, 3]`` picture it was (resized to ``size``).

    Every picture of a sample (``segbench datasets preview``, the evaluation's report
    samples) goes through here, so all show the colours the dataset read.
    """
    image = image.detach().float()
    if size is not None and tuple(image.shape[-2:]) != tuple(size):
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    pixels = denormalize(image.cpu()) * 255.0
    return pixels.round().to(torch.uint8).permute(1, 2, 0).numpy()


def evaluation_sample(image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Evaluation: normalisation only, image and label map at their original resolution."""
    return normalize(image), mask


def train_sample(
    image: Tensor, mask: Tensor, augment: TrainAugment, ignore_index: int
) -> tuple[Tensor, Tensor]:
    """One augmented training sample from an image in [0, 1] and its ``int64`` label map.

    Random scale, then pad (ignore) / random crop to the crop size, flip,
    photometric jitter, normalisation. Only the part of the image that can end up
    in the crop is resized: at scale 2 a 128 px crop needs a 65 px window, not the
    whole image blown up to twice its size (for a 2048×1024 Cityscapes frame the
    difference is most of the data pipeline's time).
    """
    height, width = image.shape[-2:]
    crop = (augment.crop_size, augment.crop_size) if augment.crop_size else (height, width)
    low, high = augment.scale_range
    if (low, high) != (1.0, 1.0):
        scale = low + (high - low) * float(torch.rand(()))
        image, mask = random_window(image, mask, (_needed(crop[0], scale), _needed(crop[1], scale)))
        image, mask = rescale(image, mask, scale)
    if augment.photometric:
        image = photometric_jitter(image)
    image = normalize(image)
    image, mask = pad_to(image, mask, crop, ignore_index)
    image, mask = random_window(image, mask, crop)
    if augment.hflip and float(torch.rand(())) < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
    return image.contiguous(), mask.contiguous()


def _needed(crop: int, scale: float) -> int:
    """Source pixels whose rescaled size still covers ``crop`` (one spare for rounding)."""
    return math.ceil(crop / scale) + 1


def rescale(image: Tensor, mask: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Resize by ``scale``: bilinear (anti-aliased when shrinking) for the image, nearest for labels.

    Labels use *nearest-exact* (pixel centres, as the image's bilinear
    ``align_corners=False`` grid): plain nearest shifts the label map up to a
    pixel against the image when enlarging.
    """
    height, width = image.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if size == (height, width):
        return image, mask
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=scale < 1)[
        0
    ]
    rows = _nearest_exact(height, size[0])
    cols = _nearest_exact(width, size[1])
    return image, mask.index_select(0, rows).index_select(1, cols)


def _nearest_exact(source: int, target: int) -> Tensor:
    """Source index of each target pixel centre: ``floor((i + 0.5) · source / target)``."""
    centres = (torch.arange(target, dtype=torch.float64) + 0.5) * (source / target)
    return centres.floor_().clamp_(max=source - 1).long()


def pad_to(image: Tensor, mask: Tensor, size: tuple[int, int], ignore_index: int) -> tuple[Tensor, Tensor]:
    """Pad bottom/right up to ``size``: the image with 0 (the mean colour once normalised), the mask with ignore."""
    height, width = image.shape[-2:]
    pad_h, pad_w = max(0, size[0] - height), max(0, size[1] - width)
    if pad_h == 0 and pad_w == 0:
        return image, mask
    image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
    mask = F.pad(mask, (0, pad_w, 0, pad_h), value=ignore_index)
    return image, mask


def random_window(image: Tensor, mask: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """A uniformly placed window of at most ``size`` (the whole side where the image is smaller)."""
    height, width = image.shape[-2:]
    size = (min(size[0], height), min(size[1], width))
    if size == (height, width):
        return image, mask
    top = int(torch.randint(0, height - size[0] + 1, ()))
    left = int(torch.randint(0, width - size[1] + 1, ()))
    window = (slice(top, top + size[0]), slice(left, left + size[1]))
    return image[(..., *window)], mask[window]


def photometric_jitter(image: Tensor) -> Tensor:
    """Brightness (±32/255), contrast and saturation (×0.5-1.5) of an image in [0, 1].

    Hue is left alone: a hue shift needs an HSV round trip per pixel and the
    reference pipelines' hue range is small.
    """
    brightness = (float(torch.rand(())) * 2 - 1) * 32 / 255
    contrast = 0.5 + float(torch.rand(()))
    saturation = 0.5 + float(torch.rand(()))
    image = image + brightness
    mean = image.mean()
    image = (image - mean) * contrast + mean
    grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
    image = (image - grey) * saturation + grey
    return image.clamp_(0.0, 1.0)
