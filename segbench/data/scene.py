"""The diagnostic scene generator: numpy only, deterministic in its random generator.

One call of :func:`render_scene` paints one synthetic street-or-harbour picture
and its label map. Each element is a *positive control* for one of the papers'
factors (``docs/diagnostic.md`` derives the sizes from receptive-field arithmetic):

* **global context** — the ground is a 6 × 6 mosaic of asphalt and water tiles
  in random order; one ground (the *scene*) holds 20-23 of the 36. The vehicles
  are the same patch, labelled ``car`` when the scene is a road and ``boat`` when
  it is water, each in a neutral grey shadow (labelled as the scene) that looks
  the same on both. Any part of the image is a small random sample of the tiles,
  so only the count over the whole image decides car or boat: a global pooling
  (PPM, ASPP image pooling, CGNet's F_glo) measures it, a network without one
  estimates it from what its effective receptive field sees.
* **boundaries** — trees with jagged, irregular outlines and poles 1/32 to 1/12
  of the image wide: bilinear upsampling from a coarse map smears them, a
  decoder keeps them.
* **small objects** — lamps 1/24 to 1/6 of the image wide (a few pixels to one
  stride-16 cell): they vanish in a stride-32 feature map and survive at stride 8.
* **ignore band** — background pixels within ``band`` px of any object are 255,
  as VOC marks its object outlines (objects themselves are never ignored).

Why a *material* map: objects are painted once as materials (asphalt, hull,
window, foliage, ...), and the image (materials → colours) and the labels
(materials → classes, with the scene deciding car/boat) are one table look-up.
Everything is vectorised; pixel noise comes from a per-seed noise bank sliced at
a random offset, because drawing fresh Gaussian noise would cost more than the
whole scene (the generator must keep up with training: ≥ 2,000 samples/s of
128×128 on one core, see ``benchmarks/bench_diagnostic.py``).

The scenes are fixed: the README's and the docs' tables were measured on them,
so a faster implementation must render the same bits for every index (the same
float32 operations in the same order per pixel, the same draws in the same
order); the benchmark checks against the generator frozen before the speed-up.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from segbench.data.classes import DIAGNOSTIC_CLASSES as CLASS_NAMES

ROAD, WATER, CAR, BOAT, TREE, POLE, LAMP = range(len(CLASS_NAMES))
IGNORE_INDEX = 255
SCENE_CLASSES = (ROAD, WATER)
CONTEXT_CLASSES = (CAR, BOAT)

_TILES = 6  # ground tiles per side
_TREE_RADIUS = (0.07, 0.12)  # of the image side
_scratch = threading.local()  # see _gather_buffer

# Placeholders in the material → class table, resolved per scene: a vehicle is a car
# on a road and a boat on water; its shadow is road or water.
_VEHICLE, _SCENE = -1, -2

# Materials: what a pixel is made of, its colour (RGB in [0, 1]) and its class.
_MATERIALS: tuple[tuple[str, tuple[float, float, float], int], ...] = (
    ("asphalt", (0.42, 0.42, 0.44), ROAD),
    ("water", (0.12, 0.32, 0.62), WATER),
    ("shadow", (0.24, 0.24, 0.26), _SCENE),  # the same on a road and on water
    # Objects: every material after the shadow (see render_scene).
    ("hull", (0.72, 0.16, 0.12), _VEHICLE),  # the same for cars and boats
    ("window", (0.78, 0.88, 0.93), _VEHICLE),
    ("trim", (0.10, 0.10, 0.10), _VEHICLE),  # wheels / waterline
    ("foliage", (0.16, 0.52, 0.18), TREE),
    ("foliage shade", (0.08, 0.32, 0.10), TREE),
    ("pole", (0.95, 0.55, 0.10), POLE),
    ("lamp", (1.00, 0.95, 0.20), LAMP),
)
(
    M_ASPHALT,
    M_WATER,
    M_SHADOW,
    M_HULL,
    M_WINDOW,
    M_TRIM,
    M_FOLIAGE,
    M_FOLIAGE_DARK,
    M_POLE,
    M_LAMP,
) = range(len(_MATERIALS))

# [3, materials]: scaled per channel by the per-image tint, then looked up by _look_up.
_CHANNEL_RGB = np.array([colour for _, colour, _ in _MATERIALS], dtype=np.float32).T.copy()
_MATERIAL_CLASS = np.array([cls for _, _, cls in _MATERIALS], dtype=np.int16)


@dataclass(frozen=True)
class SceneGeometry:
    """Per-size constants, computed once per (process, size)."""

    size: int
    rows: np.ndarray  # float32 [S, 1]
    cols: np.ndarray  # float32 [1, S]
    band: int  # ignore band width in px
    tile_span: np.ndarray  # int [6]: rows (= columns) each ground tile spans
    label_tables: tuple[np.ndarray, np.ndarray]  # material → class: [0] on a road, [1] on water
    # float32 [2R+1, 2R+1], centred: angle and squared distance of each offset from a tree's centre
    disc_angle: np.ndarray
    disc_dist2: np.ndarray


@lru_cache(maxsize=8)
def scene_geometry(size: int) -> SceneGeometry:
    axis = np.arange(size, dtype=np.float32)
    tables = []
    for scene, vehicle in zip(SCENE_CLASSES, CONTEXT_CLASSES, strict=True):
        table = _MATERIAL_CLASS.copy()
        table[table == _VEHICLE] = vehicle
        table[table == _SCENE] = scene
        tables.append(table.astype(np.uint8))
    # A tree's centre is a whole pixel, so its box's angles and distances are slices of one
    # grid of integer offsets; arctan2 on the same float32 offsets gives the same bits.
    reach = _tree_reach(_TREE_RADIUS[1] * size) + 1
    offset = np.arange(-reach, reach + 1, dtype=np.float32)
    dy, dx = offset[:, None], offset[None, :]
    return SceneGeometry(
        size=size,
        rows=axis[:, None],
        cols=axis[None, :],
        band=max(1, round(size / 128)),
        tile_span=np.bincount(np.arange(size) * _TILES // size, minlength=_TILES),
        label_tables=(tables[0], tables[1]),
        disc_angle=np.arctan2(dy, dx),
        disc_dist2=dy * dy + dx * dx,
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
    material = _ground(geo, draw)
    vehicles = [_place_vehicle(size, draw) for _ in range(draw.integer(1, 3))]
    for vehicle in vehicles:  # every shadow first: one must never cover another vehicle
        _paint_shadow(material, vehicle)
    for vehicle in vehicles:
        _paint_vehicle(material, vehicle)
    for _ in range(draw.integer(1, 3)):
        _paint_tree(material, geo, draw)
    for _ in range(draw.integer(2, 4)):
        _paint_pole(material, geo, draw)
    for _ in range(draw.integer(3, 7)):
        _paint_lamp(material, size, draw)

    # The scene is what covers more of the *visible* ground, so occluders never flip it silently.
    water = material == M_WATER
    on_water = int(np.count_nonzero(water) > np.count_nonzero(material == M_ASPHALT))
    # A per-image colour cast, applied to the (tiny) colour table rather than to the pixels.
    tint = np.array([[1.0 + draw.uniform(-0.12, 0.12)] for _ in range(3)], dtype=np.float32)
    image, labels = _look_up(material, _CHANNEL_RGB * tint, geo.label_tables[on_water])
    # Nothing paints ground or shadow over an object (every shadow goes down before the first
    # vehicle), so the objects are exactly the materials after the shadow: one comparison
    # instead of a mask kept up to date by every painter.
    labels[_outer_rim(material > M_SHADOW, geo.band)] = IGNORE_INDEX

    wave = _waves(geo, draw)
    wave *= water  # only on water (0 elsewhere, as float: the same sums)
    image += wave
    if bank is not None:
        oy, ox = draw.integer(0, size), draw.integer(0, size)
        image += bank[:, oy : oy + size, ox : ox + size]
    np.clip(image, 0.0, 1.0, out=image)
    return image, labels


def _look_up(material: np.ndarray, colours: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(image float32 [3, S, S] contiguous, labels uint8 [S, S])``: the material map through two tables.

    One gather of 16-byte rows ``[r, g, b, class]`` then a de-interleaving copy
    takes about half the time of a take along the colour table's second axis
    (numpy copies 16-byte items in its fastest take loop, 4-byte ones per
    channel in its slowest) plus a second take for the labels. Both only copy
    table entries, so the pixels are the same bits either way.
    """
    table = np.empty((colours.shape[1], 4), dtype=np.float32)
    table[:, :3] = colours.T
    table[:, 3] = classes  # small integers: exact in float32
    pixels = _gather_buffer((*material.shape, 4))
    np.take(table, material, axis=0, out=pixels, mode="clip")  # every index is a material: no clipping
    image = np.empty((3, *material.shape), dtype=np.float32)
    np.copyto(image, pixels[..., :3].transpose(2, 0, 1))
    return image, pixels[..., 3].astype(np.uint8)


def _gather_buffer(shape: tuple[int, int, int]) -> np.ndarray:
    """This thread's scratch array for :func:`_look_up`'s gather, reused from scene to scene.

    A fresh 256 KB array per scene is handed back to the kernel by glibc when it
    is freed and page-faulted in again by the next scene: that cost more than
    the gather (measured: 116 page faults per scene without it, none with it).
    Per thread, so scenes rendered in threads never share it.
    """
    buffer = getattr(_scratch, "pixels", None)
    if buffer is None or buffer.shape != shape:
        buffer = _scratch.pixels = np.empty(shape, dtype=np.float32)
    return buffer


def _ground(geo: SceneGeometry, draw: _Draws) -> np.ndarray:
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
    # Each tile is a run of rows and columns: two repeats (memcpy) beat a 2-D fancy index.
    return grid.reshape(_TILES, _TILES).repeat(geo.tile_span, axis=0).repeat(geo.tile_span, axis=1)


def _waves(geo: SceneGeometry, draw: _Draws) -> np.ndarray:
    """Horizontal swell: a separable brightness pattern (cheap: one outer product)."""
    freq_y = draw.uniform(0.25, 0.5) * 32 / geo.size * np.pi
    freq_x = draw.uniform(0.5, 1.5) * 2 * np.pi / geo.size
    swell = np.sin(geo.rows * np.float32(freq_y) + np.float32(draw.uniform(0, 2 * np.pi)))
    ripple = 1.0 + 0.5 * np.sin(geo.cols * np.float32(freq_x) + np.float32(draw.uniform(0, 2 * np.pi)))
    return np.float32(0.09) * swell * ripple


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


def _paint_vehicle(material: np.ndarray, vehicle: tuple[int, int, int, int, int]) -> None:
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


def _tree_reach(radius: float) -> int:
    """Half the side of a tree's box: the outline reaches at most 1.4 radii out."""
    return math.ceil(radius * 1.45)


def _paint_tree(material: np.ndarray, geo: SceneGeometry, draw: _Draws) -> None:
    """A blob whose radius wobbles with angle: an irregular, jagged outline.

    ``edge = radius * (1 + 0.25 sin(k1 a + p1) + 0.15 sin(k2 a + p2))``, evaluated
    in place in float32 (the same operations in the same order as the plain
    expression, so the same bits, with four fewer temporaries).
    """
    size = geo.size
    radius = size * draw.uniform(*_TREE_RADIUS)
    reach = _tree_reach(radius)
    cy, cx = draw.integer(0, size), draw.integer(0, size)
    y0, y1 = max(0, cy - reach), min(size, cy + reach + 1)
    x0, x1 = max(0, cx - reach), min(size, cx + reach + 1)
    centre = geo.disc_angle.shape[0] // 2
    box = slice(centre + y0 - cy, centre + y1 - cy), slice(centre + x0 - cx, centre + x1 - cx)
    angle, dist2 = geo.disc_angle[box], geo.disc_dist2[box]
    k1, k2 = draw.integer(5, 10), draw.integer(11, 19)
    p1, p2 = draw.uniform(0, 2 * np.pi), draw.uniform(0, 2 * np.pi)
    edge = k1 * angle
    edge += p1
    np.sin(edge, out=edge)
    edge *= 0.25
    edge += 1.0
    wobble = k2 * angle
    wobble += p2
    np.sin(wobble, out=wobble)
    wobble *= 0.15
    edge += wobble
    edge *= radius
    np.multiply(edge, edge, out=wobble)
    inside = dist2 <= wobble
    edge *= 0.45
    edge *= edge
    shade = dist2 <= edge
    shade &= inside
    region = material[y0:y1, x0:x1]
    np.putmask(region, inside, M_FOLIAGE)  # putmask: a third faster than a boolean index here
    np.putmask(region, shade, M_FOLIAGE_DARK)


def _paint_pole(material: np.ndarray, geo: SceneGeometry, draw: _Draws) -> None:
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
    np.putmask(material[y0:y1, x0:x1], on, M_POLE)


def _paint_lamp(material: np.ndarray, size: int, draw: _Draws) -> None:
    """A bright square 1/24 to 1/6 of the image wide (4-16 px at 96 px): a few pixels to one stride-16 cell."""
    side = max(3, round(size * draw.uniform(1 / 24, 1 / 6)))
    top, left = draw.integer(0, size - side + 1), draw.integer(0, size - side + 1)
    material[top : top + side, left : left + side] = M_LAMP


def _outer_rim(things: np.ndarray, band: int) -> np.ndarray:
    """Background pixels within ``band`` px (4-neighbourhood steps) of an object."""
    grown = things
    for _ in range(band):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown ^ things  # the objects are inside what grew from them
