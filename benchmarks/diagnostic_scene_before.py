"""The diagnostic scene generator as it was before the speed-up (commit cb2138a), frozen.

``bench_diagnostic.py`` times it in the same run as :mod:`segbench.data.scene`,
so the speed-up is a ratio on the same core at the same load, and checks that
both render bit-identical scenes (the README and docs tables were measured on
these scenes). Do not edit or optimise this file: it is the baseline. The
design of the scenes is documented in :mod:`segbench.data.scene`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from segbench.data.classes import DIAGNOSTIC_CLASSES as CLASS_NAMES

ROAD, WATER, CAR, BOAT, TREE, POLE, LAMP = range(len(CLASS_NAMES))
IGNORE_INDEX = 255
SCENE_CLASSES = (ROAD, WATER)
CONTEXT_CLASSES = (CAR, BOAT)

_TILES = 6  # ground tiles per side

# Placeholders in the material → class table, resolved per scene: a vehicle is a car
# on a road and a boat on water; its shadow is road or water.
_VEHICLE, _SCENE = -1, -2

# Materials: what a pixel is made of, its colour (RGB in [0, 1]) and its class.
_MATERIALS: tuple[tuple[str, tuple[float, float, float], int], ...] = (
    ("asphalt", (0.42, 0.42, 0.44), ROAD),
    ("water", (0.12, 0.32, 0.62), WATER),
    ("hull", (0.72, 0.16, 0.12), _VEHICLE),  # the same for cars and boats
    ("window", (0.78, 0.88, 0.93), _VEHICLE),
    ("trim", (0.10, 0.10, 0.10), _VEHICLE),  # wheels / waterline
    ("shadow", (0.24, 0.24, 0.26), _SCENE),  # the same on a road and on water
    ("foliage", (0.16, 0.52, 0.18), TREE),
    ("foliage shade", (0.08, 0.32, 0.10), TREE),
    ("pole", (0.95, 0.55, 0.10), POLE),
    ("lamp", (1.00, 0.95, 0.20), LAMP),
)
(
    M_ASPHALT,
    M_WATER,
    M_HULL,
    M_WINDOW,
    M_TRIM,
    M_SHADOW,
    M_FOLIAGE,
    M_FOLIAGE_DARK,
    M_POLE,
    M_LAMP,
) = range(len(_MATERIALS))

# [3, materials]: one np.take along axis 1 paints a contiguous [3, S, S] image.
_CHANNEL_RGB = np.array([colour for _, colour, _ in _MATERIALS], dtype=np.float32).T.copy()
_MATERIAL_CLASS = np.array([cls for _, _, cls in _MATERIALS], dtype=np.int16)


@dataclass(frozen=True)
class SceneGeometry:
    """Per-size constants, computed once per (process, size)."""

    size: int
    rows: np.ndarray  # float32 [S, 1]
    cols: np.ndarray  # float32 [1, S]
    band: int  # ignore band width in px
    tile: np.ndarray  # int [S]: the ground tile of each row / column
    label_tables: tuple[np.ndarray, np.ndarray]  # material → class: [0] on a road, [1] on water


@lru_cache(maxsize=8)
def scene_geometry(size: int) -> SceneGeometry:
    axis = np.arange(size, dtype=np.float32)
    tables = []
    for scene, vehicle in zip(SCENE_CLASSES, CONTEXT_CLASSES, strict=True):
        table = _MATERIAL_CLASS.copy()
        table[table == _VEHICLE] = vehicle
        table[table == _SCENE] = scene
        tables.append(table.astype(np.uint8))
    return SceneGeometry(
        size=size,
        rows=axis[:, None],
        cols=axis[None, :],
        band=max(1, round(size / 128)),
        tile=np.arange(size) * _TILES // size,
        label_tables=(tables[0], tables[1]),
    )


@lru_cache(maxsize=8)
def noise_bank(size: int, seed: int, std: float) -> np.ndarray:
    """Gaussian noise ``[3, 2S, 2S]`` of standard deviation ``std``, fixed by ``seed``.

    Samples add an ``S × S`` window of it at a random offset: drawing fresh noise
    per sample would cost more than painting the scene.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6E6F697365]))
    bank = rng.standard_normal((3, 2 * size, 2 * size), dtype=np.float32)
    bank *= np.float32(std)
    return bank


class _Draws:
    """Uniform numbers drawn from a generator in blocks.

    Numpy's per-call overhead (about 1-4 µs for ``rng.integers``) would be a
    third of the time budget of a scene; one block of uniforms handed out as
    Python floats costs ~0.1 µs each. The sequence stays a pure function of the
    generator, so scenes stay deterministic.
    """

    __slots__ = ("_rng", "_block")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._block: list[float] = []

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        if not self._block:
            self._block = self._rng.random(64).tolist()
        return low + (high - low) * self._block.pop()

    def integer(self, low: int, high: int) -> int:
        """An integer in ``[low, high)``."""
        return min(high - 1, low + int((high - low) * self.uniform()))


def render_scene(
    rng: np.random.Generator, size: int, bank: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """One sample: ``(image float32 [3, S, S] in [0, 1], labels uint8 [S, S])``.

    All randomness is drawn from ``rng``; ``bank`` is :func:`noise_bank` for the
    size (already scaled to the noise level), or None for noise-free images.
    """
    geo = scene_geometry(size)
    draw = _Draws(rng)
    material = np.empty((size, size), dtype=np.uint8)
    _paint_ground(material, geo, draw)
    things = np.zeros((size, size), dtype=bool)
    vehicles = [_place_vehicle(size, draw) for _ in range(draw.integer(1, 3))]
    for vehicle in vehicles:  # every shadow first: one must never cover another vehicle
        _paint_shadow(material, vehicle)
    for vehicle in vehicles:
        _paint_vehicle(material, things, vehicle)
    for _ in range(draw.integer(1, 3)):
        _paint_tree(material, things, geo, draw)
    for _ in range(draw.integer(2, 4)):
        _paint_pole(material, things, geo, draw)
    for _ in range(draw.integer(3, 7)):
        _paint_lamp(material, things, size, draw)

    # The scene is what covers more of the *visible* ground, so occluders never flip it silently.
    water = material == M_WATER
    on_water = int(np.count_nonzero(water) > np.count_nonzero(material == M_ASPHALT))
    labels = np.take(geo.label_tables[on_water], material)
    labels[_outer_rim(things, geo.band)] = IGNORE_INDEX

    # A per-image colour cast, applied to the (tiny) colour table rather than to the pixels.
    tint = np.array([[1.0 + draw.uniform(-0.12, 0.12)] for _ in range(3)], dtype=np.float32)
    image = np.take(_CHANNEL_RGB * tint, material, axis=1)  # [3, S, S], contiguous
    image += _waves(geo, draw) * water
    if bank is not None:
        oy, ox = draw.integer(0, size), draw.integer(0, size)
        image += bank[:, oy : oy + size, ox : ox + size]
    np.clip(image, 0.0, 1.0, out=image)
    return image, labels


def _paint_ground(material: np.ndarray, geo: SceneGeometry, draw: _Draws) -> None:
    """A 6 × 6 mosaic of asphalt and water tiles: the scene's ground holds 20-23 of the 36.

    Which tiles are which is a random permutation, so any part of the image is a
    small random sample of the tiles; only the count over the whole image says
    which ground is the majority.
    """
    scene, other = (M_WATER, M_ASPHALT) if draw.integer(0, 2) else (M_ASPHALT, M_WATER)
    majority = draw.integer(20, 24)
    keys = [draw.uniform() for _ in range(_TILES * _TILES)]
    grid = np.full(_TILES * _TILES, other, dtype=np.uint8)
    grid[sorted(range(_TILES * _TILES), key=keys.__getitem__)[:majority]] = scene
    grid = grid.reshape(_TILES, _TILES)
    material[:] = grid[geo.tile][:, geo.tile]


def _waves(geo: SceneGeometry, draw: _Draws) -> np.ndarray:
    """Horizontal swell: a separable brightness pattern (cheap: one outer product)."""
    freq_y = draw.uniform(0.25, 0.5) * 32 / geo.size * np.pi
    freq_x = draw.uniform(0.5, 1.5) * 2 * np.pi / geo.size
    swell = np.sin(geo.rows * np.float32(freq_y) + np.float32(draw.uniform(0, 2 * np.pi)))
    ripple = 1.0 + 0.5 * np.sin(geo.cols * np.float32(freq_x) + np.float32(draw.uniform(0, 2 * np.pi)))
    return (np.float32(0.09) * swell * ripple)[None]


def _place_vehicle(size: int, draw: _Draws) -> tuple[int, int, int, int, int]:
    """``(top, left, height, width, shadow)`` of one vehicle, fully inside the image."""
    width = int(size * draw.uniform(0.18, 0.26))
    height = int(width * draw.uniform(0.75, 0.95))
    shadow = int(size * draw.uniform(0.06, 0.09))
    return draw.integer(0, size - height + 1), draw.integer(0, size - width + 1), height, width, shadow


def _paint_shadow(material: np.ndarray, vehicle: tuple[int, int, int, int, int]) -> None:
    """The neutral halo that hides the scene from a small receptive field around a vehicle."""
    top, left, height, width, shadow = vehicle
    material[max(0, top - shadow) : top + height + shadow, max(0, left - shadow) : left + width + shadow] = (
        M_SHADOW
    )


def _paint_vehicle(material: np.ndarray, things: np.ndarray, vehicle: tuple[int, int, int, int, int]) -> None:
    """The identical car/boat patch: hull, a row of windows, a dark trim along the bottom."""
    top, left, height, width, _ = vehicle
    patch = material[top : top + height, left : left + width]
    patch.fill(M_HULL)
    win_top, win_bottom = height // 6, height // 2
    n_windows = 3
    gap = max(1, width // 12)
    win_width = (width - gap * (n_windows + 1)) // n_windows
    for i in range(n_windows):
        x0 = gap + i * (win_width + gap)
        patch[win_top:win_bottom, x0 : x0 + win_width] = M_WINDOW
    patch[height - max(1, height // 6) :, :] = M_TRIM
    things[top : top + height, left : left + width] = True


def _paint_tree(material: np.ndarray, things: np.ndarray, geo: SceneGeometry, draw: _Draws) -> None:
    """A blob whose radius wobbles with angle: an irregular, jagged outline."""
    size = geo.size
    radius = size * draw.uniform(0.07, 0.12)
    reach = int(np.ceil(radius * 1.45))
    cy, cx = draw.integer(0, size), draw.integer(0, size)
    y0, y1 = max(0, cy - reach), min(size, cy + reach + 1)
    x0, x1 = max(0, cx - reach), min(size, cx + reach + 1)
    dy = geo.rows[y0:y1] - cy
    dx = geo.cols[:, x0:x1] - cx
    angle = np.arctan2(dy, dx)
    k1, k2 = draw.integer(5, 10), draw.integer(11, 19)
    p1, p2 = draw.uniform(0, 2 * np.pi), draw.uniform(0, 2 * np.pi)
    edge = radius * (1.0 + 0.25 * np.sin(k1 * angle + p1) + 0.15 * np.sin(k2 * angle + p2))
    dist2 = dy * dy + dx * dx
    inside = dist2 <= edge * edge
    shade = inside & (dist2 <= (0.45 * edge) ** 2)
    region = material[y0:y1, x0:x1]
    region[inside] = M_FOLIAGE
    region[shade] = M_FOLIAGE_DARK
    things[y0:y1, x0:x1] |= inside


def _paint_pole(material: np.ndarray, things: np.ndarray, geo: SceneGeometry, draw: _Draws) -> None:
    """A thin straight segment, 1/32 to 1/12 of the image wide (3-8 px at 96 px), at any angle."""
    size = geo.size
    half_width = size * draw.uniform(1 / 64, 1 / 24)
    length = size * draw.uniform(0.4, 0.8)
    theta = draw.uniform(0, np.pi)
    uy, ux = np.float32(np.sin(theta)), np.float32(np.cos(theta))
    cy, cx = draw.uniform(0, size), draw.uniform(0, size)
    ey, ex = abs(uy) * length / 2 + 1, abs(ux) * length / 2 + 1
    y0, y1 = max(0, int(cy - ey)), min(size, int(cy + ey) + 1)
    x0, x1 = max(0, int(cx - ex)), min(size, int(cx + ex) + 1)
    dy = geo.rows[y0:y1] - np.float32(cy)
    dx = geo.cols[:, x0:x1] - np.float32(cx)
    across = dx * uy - dy * ux
    along = dx * ux + dy * uy
    on = (np.abs(across) <= half_width) & (np.abs(along) <= length / 2)
    material[y0:y1, x0:x1][on] = M_POLE
    things[y0:y1, x0:x1] |= on


def _paint_lamp(material: np.ndarray, things: np.ndarray, size: int, draw: _Draws) -> None:
    """A bright square 1/24 to 1/6 of the image wide (4-16 px at 96 px): a few pixels to one stride-16 cell."""
    side = max(3, round(size * draw.uniform(1 / 24, 1 / 6)))
    top, left = draw.integer(0, size - side + 1), draw.integer(0, size - side + 1)
    material[top : top + side, left : left + side] = M_LAMP
    things[top : top + side, left : left + side] = True


def _outer_rim(things: np.ndarray, band: int) -> np.ndarray:
    """Background pixels within ``band`` px (4-neighbourhood steps) of an object."""
    grown = things.copy()
    for _ in range(band):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown & ~things
