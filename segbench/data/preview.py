"""A picture of a dataset: samples next to their colour-coded masks, with a legend.

What ``segbench datasets preview NAME --out FILE.png`` writes, and the picture in
``docs/datasets.md``. Samples are read through the dataset exactly as training
and evaluation read them (evaluation preprocessing, then un-normalised), so the
picture shows what the network is given, including the label remapping and the
ignore label, drawn in white.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from segbench.data.classes import voc_colormap
from segbench.data.transforms import display_image

IGNORE_COLOUR = (255, 255, 255)
_BACKGROUND = (32, 32, 32)
_GAP = 4
_LEGEND_ROW = 14


def colourise(
    mask: np.ndarray, palette: Sequence[tuple[int, int, int]] | None, ignore_index: int = 255
) -> np.ndarray:
    """``uint8 [H, W, 3]``: each class in its palette colour (VOC's colour map without one), ignored white.

    The one mask painter: the preview and the evaluation's report samples both use it.
    """
    colours = palette or voc_colormap(256)
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(colours)] = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)[:256]
    table[ignore_index] = IGNORE_COLOUR
    return table[np.clip(mask, 0, 255).astype(np.uint8)]


def sample_png(
    image: np.ndarray, gt: np.ndarray, pred: np.ndarray, palette: Sequence | None, ignore_index: int
) -> bytes:
    """image | ground truth | prediction side by side, as PNG bytes (an evaluation's report sample)."""
    panels = [image, colourise(gt, palette, ignore_index), colourise(pred, palette, ignore_index)]
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate(panels, axis=1)).save(buffer, format="PNG")
    return buffer.getvalue()


def preview_grid(dataset: object, count: int = 8, tile: int = 160, columns: int = 4) -> Image.Image:
    """The first ``count`` samples of ``dataset`` as [image | mask] cells, ``columns`` cells per row."""
    count = max(1, min(count, len(dataset)))  # type: ignore[arg-type]
    palette = dataset.palette  # type: ignore[attr-defined]
    ignore_index = dataset.ignore_index  # type: ignore[attr-defined]
    names = dataset.class_names  # type: ignore[attr-defined]
    cells = []
    present: set[int] = set()
    for index in range(count):
        image, mask = dataset[index]  # type: ignore[index]
        mask_np = mask.numpy()
        present.update(int(v) for v in np.unique(mask_np))
        cells.append(
            (
                _fit(display_image(image), tile, Image.BILINEAR),
                _fit(colourise(mask_np, palette, ignore_index), tile, Image.NEAREST),
            )
        )

    columns = min(columns, count)
    rows = -(-count // columns)
    cell_width = 2 * tile + _GAP
    legend = [(names[c], palette[c]) for c in sorted(present) if c < len(names)]
    if ignore_index in present:
        legend.append((f"ignored ({ignore_index})", IGNORE_COLOUR))
    legend_columns = max(1, (columns * (cell_width + 2 * _GAP)) // 150)
    legend_height = (-(-len(legend) // legend_columns)) * _LEGEND_ROW + _GAP
    width = columns * (cell_width + 2 * _GAP)
    height = rows * (tile + 2 * _GAP) + legend_height
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    for i, (image_tile, mask_tile) in enumerate(cells):
        x = (i % columns) * (cell_width + 2 * _GAP) + _GAP
        y = (i // columns) * (tile + 2 * _GAP) + _GAP
        canvas.paste(image_tile, (x, y))
        canvas.paste(mask_tile, (x + tile + _GAP, y))
    _draw_legend(canvas, legend, rows * (tile + 2 * _GAP), legend_columns, width // legend_columns)
    return canvas


def _fit(array: np.ndarray, tile: int, resample: int) -> Image.Image:
    """``array`` scaled to fit a ``tile`` square (aspect kept), centred on the background colour."""
    image = Image.fromarray(array)
    scale = tile / max(image.width, image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # Enlarging: nearest neighbour shows the pixels as they are; shrinking: the given filter.
    image = image.resize(size, Image.NEAREST if scale >= 1 else resample)
    box = Image.new("RGB", (tile, tile), _BACKGROUND)
    box.paste(image, ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return box


def _draw_legend(
    canvas: Image.Image,
    legend: list[tuple[str, tuple[int, int, int]]],
    top: int,
    columns: int,
    column_width: int,
) -> None:
    draw = ImageDraw.Draw(canvas)
    for i, (name, colour) in enumerate(legend):
        x = (i % columns) * column_width + _GAP
        y = top + (i // columns) * _LEGEND_ROW
        draw.rectangle((x, y + 2, x + 10, y + 12), fill=tuple(colour), outline=(200, 200, 200))
        draw.text((x + 14, y + 1), name, fill=(230, 230, 230))
