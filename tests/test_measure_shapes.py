"""``input_shape`` and ``device`` validation: what is wrong, and what was probably meant."""

from __future__ import annotations

import pytest

from segbench.errors import UserError
from segbench.measure.shapes import validate_device, validate_input_shape


def test_a_valid_shape_comes_back_as_a_tuple() -> None:
    assert validate_input_shape([2, 3, 64, 48]) == (2, 3, 64, 48)
    assert validate_input_shape((1, 4, 32, 32)) == (1, 4, 32, 32)  # RGB-D
    assert validate_input_shape((1, 13, 64, 64)) == (1, 13, 64, 64)  # multispectral, channels first


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 520, 520, 3), r"looks like \(N, H, W, C\).*did you mean \(1, 3, 520, 520\)"),
        ((4, 256, 512, 1), r"did you mean \(4, 1, 256, 512\)"),
        ((3, 520, 520), r"expected 4 dimensions.*did you mean \(1, 3, 520, 520\)"),
        ((1, 3, 520), r"expected 4 dimensions"),
        ((1, 3, 0, 64), "positive integer"),
        ((1, 3, 64.0, 64), "positive integer"),
        ((1, True, 64, 64), "positive integer"),
        (520, r"expected a tuple \(N, C, H, W\)"),
    ],
)
def test_bad_shapes_say_what_is_wrong(shape: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        validate_input_shape(shape)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_known_devices(device: str) -> None:
    assert validate_device(device) == device


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "did you mean 'cuda'"),
        ("cuda:x", "cuda:N"),
        ("cpu:1", "only CUDA devices take an index"),
        ("mps", "segbench measures on cpu, cuda"),
        (0, "expected a string"),
    ],
)
def test_bad_devices(device: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        validate_device(device)  # type: ignore[arg-type]
