"""The backbone interface and DeepLab's rule for trading strides for atrous rates.

A backbone is a chain of *units* with nominal strides (1 or 2). To reach an output
stride below the nominal one, DeepLab (``stack_blocks_dense`` in the official
TensorFlow code) walks the chain keeping the current stride and rate: once the
current stride equals the target, each further unit runs with stride 1 and the
rate grows by the unit's stride. The unit that lost its stride still runs at the
old rate; PSPNet's official ResNet instead dilates a whole stage, including its
first unit (``dilate_first``; see ``resnet.py`` for the DeepLab models' ResNets).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

from torch import Tensor, nn

from segbench.errors import UserError

FEATURES: tuple[str, ...] = ("low_level", "mid_level", "aux", "out")
OUTPUT_STRIDES: tuple[int, ...] = (8, 16, 32)


def dilation_plan(
    strides: Sequence[int], output_stride: int, dilate_first: bool = False
) -> list[tuple[int, int]]:
    """``(stride, rate)`` for each unit so that the chain ends at ``output_stride``."""
    current, rate, plan = 1, 1, []
    for stride in strides:
        if current == output_stride:
            next_rate = rate * stride
            plan.append((1, next_rate if dilate_first else rate))
            rate = next_rate
        else:
            plan.append((stride, rate))
            current *= stride
    if current != output_stride:
        raise ValueError(f"output stride {output_stride} cannot be reached with unit strides {list(strides)}")
    return plan


def reachable_output_strides(strides: Sequence[int]) -> tuple[int, ...]:
    """The output strides (of 8/16/32) that a chain with these unit strides can end at."""
    prefixes = {math.prod(strides[:i]) for i in range(len(strides) + 1)}
    return tuple(s for s in OUTPUT_STRIDES if s in prefixes)


def check_multi_grid(name: str, multi_grid: Sequence[int] | None, units: int) -> tuple[int, ...]:
    """Validate DeepLab v3's Multi-Grid: one positive unit rate per unit of the last block."""
    if multi_grid is None:
        return (1,) * units
    grid = tuple(multi_grid)
    if len(grid) != units or not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in grid):
        raise UserError(
            f"multi_grid for '{name}' needs {units} positive integer unit rates (one per unit of its last "
            f"block), e.g. {(1, 2, 4)[:units] if units <= 3 else (1,) * units}; got {list(grid)}"
        )
    return grid


def no_multi_grid(name: str, multi_grid: Sequence[int] | None) -> None:
    """Backbones without a last block of repeated units accept no multi-grid but the trivial one."""
    if multi_grid is not None and any(r != 1 for r in multi_grid):
        raise UserError(
            f"backbone '{name}' has no multi-grid block; multi_grid applies to ResNet (layer4) and "
            f"Xception (exit flow block 2) backbones; got {list(multi_grid)}"
        )


def sequential_min_input_size(layers: Iterable[nn.Module], limit: int = 4096) -> int:
    """Smallest square input that every conv and max-pool of a plain chain accepts.

    Valid only for chains whose parallel branches keep the spatial size (SqueezeNet's
    Fire modules, VGG); it mirrors PyTorch's output-size formula, ``ceil_mode`` included.
    """
    ops = []
    for layer in layers:
        for m in layer.modules():
            if isinstance(m, nn.Conv2d | nn.MaxPool2d):
                k, s, p, d = (_first(getattr(m, a)) for a in ("kernel_size", "stride", "padding", "dilation"))
                ops.append((k, s, p, d, bool(getattr(m, "ceil_mode", False))))
    for n in range(1, limit):
        size = n
        for k, s, p, d, ceil in ops:
            span = size + 2 * p - d * (k - 1) - 1
            if span < 0:
                break
            out = (-(-span // s) if ceil else span // s) + 1
            if ceil and (out - 1) * s >= size + p:
                out -= 1
            size = out
        else:
            return n
    raise ValueError("no input size below the limit fits this chain")


def tap_sequential(layers: Iterable[nn.Module], taps: dict[int, str], x: Tensor) -> dict[str, Tensor]:
    """Run a plain chain of layers, keeping the outputs of the layers ``taps`` names by index."""
    out: dict[str, Tensor] = {}
    for index, module in enumerate(layers):
        x = module(x)
        if index in taps:
            out[taps[index]] = x
    return out


def _first(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


class Backbone(nn.Module, ABC):
    """A feature extractor with named outputs and a switchable output stride.

    Subclasses describe their chain of units (:meth:`unit_strides`) and apply a
    plan of ``(stride, rate)`` per unit (:meth:`apply_plan`); this class turns an
    output stride into that plan, validates it, and checks input sizes.
    """

    dilate_first: bool = False

    def __init__(self, name: str, channels: dict[str, int]) -> None:
        super().__init__()
        self.name = name
        self.channels = dict(channels)
        self._output_stride = 0
        self._min_input_size = 1

    @property
    def output_stride(self) -> int:
        """Input size / size of ``out`` (8, 16 or 32)."""
        return self._output_stride

    @property
    def min_input_size(self) -> int:
        """The smallest input side the backbone accepts at its current output stride."""
        return self._min_input_size

    @property
    def supported_output_strides(self) -> tuple[int, ...]:
        return reachable_output_strides(self.unit_strides())

    def set_output_stride(self, output_stride: int) -> None:
        """Move to ``output_stride`` in place: strides and rates change, weights do not."""
        supported = self.supported_output_strides
        if output_stride not in supported:
            native = math.prod(self.unit_strides())
            raise UserError(
                f"backbone '{self.name}' supports output_stride {', '.join(map(str, supported))} "
                f"(native stride {native}; smaller strides trade late strides for atrous rates); "
                f"got {output_stride!r}"
            )
        self.apply_plan(dilation_plan(self.unit_strides(), output_stride, self.dilate_first))
        self._output_stride = output_stride
        self._min_input_size = self.compute_min_input_size()

    def compute_min_input_size(self) -> int:
        """Padded convolutions accept any size; chains with unpadded pools override this."""
        return 1

    @abstractmethod
    def unit_strides(self) -> list[int]:
        """The nominal stride of every unit of the chain, in forward order."""

    @abstractmethod
    def apply_plan(self, plan: list[tuple[int, int]]) -> None:
        """Set each unit's stride and atrous rate from :func:`dilation_plan`'s output."""

    @abstractmethod
    def extract(self, x: Tensor) -> dict[str, Tensor]:
        """The named feature maps of :data:`FEATURES`."""

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        height, width = x.shape[-2:]
        if height < self._min_input_size or width < self._min_input_size:
            raise UserError(
                f"backbone '{self.name}' at output stride {self._output_stride} needs inputs of at least "
                f"{self._min_input_size}x{self._min_input_size} px; got {height}x{width}"
            )
        return self.extract(x)
