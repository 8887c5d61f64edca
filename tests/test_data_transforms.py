"""Joint image/mask transforms: padding with ignore, alignment under flips and scaling, evaluation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segbench.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainAugment,
    denormalize,
    evaluation_sample,
    rescale,
    train_sample,
)
from segbench.errors import UserError

IGNORE = 255


def coded_sample(height: int, width: int, block: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose red channel encodes the label: label = round(red · 10), in blocks of ``block`` px."""
    rows = torch.arange(height)[:, None] // block
    cols = torch.arange(width)[None, :] // block
    mask = ((rows * 7 + cols * 3) % 10).long()
    image = torch.stack([mask.float() / 10, torch.rand(height, width), torch.rand(height, width)])
    return image, mask


def decode(image: torch.Tensor) -> torch.Tensor:
    """The label the (normalised) image's red channel encodes."""
    return (denormalize(image.clone())[0] * 10).round().long()


def test_small_image_is_padded_with_ignore_and_the_mean_colour() -> None:
    image, mask = coded_sample(10, 12)
    out_image, out_mask = train_sample(
        image, mask, TrainAugment(crop_size=16, scale_range=(1, 1), hflip=False), IGNORE
    )
    assert out_image.shape == (3, 16, 16) and out_mask.shape == (16, 16)
    assert (out_mask[10:, :] == IGNORE).all() and (out_mask[:, 12:] == IGNORE).all()
    assert torch.equal(out_mask[:10, :12], mask)
    assert (out_image[:, 10:, :] == 0).all()  # 0 after normalisation = the ImageNet mean colour


def test_crop_of_a_large_image_is_a_window_of_it() -> None:
    image, mask = coded_sample(40, 30)
    torch.manual_seed(0)
    out_image, out_mask = train_sample(
        image, mask, TrainAugment(crop_size=16, scale_range=(1, 1), hflip=False), IGNORE
    )
    assert out_mask.shape == (16, 16) and not (out_mask == IGNORE).any()
    windows = [mask[t : t + 16, s : s + 16] for t in range(25) for s in range(15)]
    assert any(torch.equal(out_mask, w) for w in windows)
    assert torch.equal(decode(out_image), out_mask)


def test_flips_keep_image_and_mask_aligned() -> None:
    image, mask = coded_sample(16, 16)
    flipped = 0
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out_mask = train_sample(
            image.clone(), mask, TrainAugment(crop_size=16, scale_range=(1, 1), hflip=True), IGNORE
        )
        assert torch.equal(decode(out_image), out_mask)
        flipped += int(torch.equal(out_mask, mask.flip(-1)))
    assert 0 < flipped < 12  # both outcomes happen


def interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3×3 neighbourhood has one label: there bilinear resampling is exact."""
    padded = F.pad(mask[None, None].float(), (1, 1, 1, 1), mode="replicate")
    neighbours = F.unfold(padded, 3).view(9, *mask.shape)
    return (neighbours == mask.float()).all(0) & (mask != IGNORE)


def test_random_scale_keeps_labels_on_their_pixels() -> None:
    """Wherever resampling cannot mix labels, the image still encodes the mask's label exactly.

    A one-pixel shift between image and mask would break this on ~5% of those pixels.
    """
    image, mask = coded_sample(48, 48, block=8)
    label_counts = []
    for seed in range(8):
        torch.manual_seed(seed)
        out_image, out_mask = train_sample(
            image.clone(), mask, TrainAugment(crop_size=24, scale_range=(0.5, 2.0)), IGNORE
        )
        inside = interior(out_mask)
        assert inside.sum() > 50
        assert torch.equal(decode(out_image)[inside], out_mask[inside])
        label_counts.append(out_mask.unique().numel())
    assert len(set(label_counts)) > 1  # the scale did vary: crops hold different numbers of blocks


def test_upscaled_labels_sit_on_the_image_pixels_they_came_from() -> None:
    """Nearest-exact: at ×2 each label becomes a 2×2 block exactly where its image pixel went."""
    image, mask = coded_sample(5, 5)
    big_image, big_mask = rescale(image, mask, 2.0)
    assert big_mask.shape == (10, 10)
    assert torch.equal(big_mask, mask.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert big_image.shape == (3, 10, 10)


def test_evaluation_only_normalises() -> None:
    image, mask = coded_sample(9, 7)
    out_image, out_mask = evaluation_sample(image.clone(), mask)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(out_image, (image - mean) / std, atol=1e-6)
    assert out_mask is mask


def test_photometric_jitter_changes_colours_not_labels() -> None:
    image, mask = coded_sample(16, 16)
    torch.manual_seed(1)
    out_image, out_mask = train_sample(
        image.clone(),
        mask,
        TrainAugment(crop_size=16, scale_range=(1, 1), hflip=False, photometric=True),
        IGNORE,
    )
    assert torch.equal(out_mask, mask)
    assert not torch.allclose(denormalize(out_image.clone()), image, atol=1e-3)


def test_bad_settings_are_user_errors() -> None:
    with pytest.raises(UserError, match="scale_range"):
        TrainAugment(crop_size=16, scale_range=(2.0, 1.0))
    with pytest.raises(UserError, match="crop_size"):
        TrainAugment(crop_size=0)
