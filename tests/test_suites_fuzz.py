"""Property: whatever a suite file holds, loading and expanding it succeeds or raises UserError.

Mutations of a valid suite (keys replaced by random ones, values of the wrong type, random
text spliced into the YAML, random bytes) go through ``parse_suite`` and ``expand``; any
other exception (a TypeError from a wrong type, a RecursionError, a ValueError from a path)
would reach the user as a traceback instead of exit 2. Hypothesis runs derandomized with a
bounded number of examples, so the test is reproducible and takes seconds.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segbench.config import parse_suite
from segbench.errors import UserError
from segbench.suite import expand
from tests.test_bad_suites import BASE

VALID: dict[str, Any] = yaml.safe_load(BASE)

#: Values of every YAML type, including those that are wrong almost everywhere.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["false", "yes", "on", "8", "1e3", "~", "mIoU", "resnet18", "/nonexistent", "a:b"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into the suite's data: the places a mutation can hit."""
    out = [prefix]
    if isinstance(node, dict):
        for key, item in node.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            out += _paths(item, (*prefix, i))
    return out


PATHS = [p for p in _paths(VALID) if p]


@st.composite
def mutated_data(draw: st.DrawFn) -> str:
    """YAML of the valid suite with one to three values replaced, keys renamed or added."""
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = data
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            action = draw(st.sampled_from(["replace", "rename", "add", "delete"]))
            last = path[-1]
            if isinstance(parent, dict) and last in parent:
                if action == "replace":
                    parent[last] = draw(values)
                elif action == "rename":
                    parent[draw(st.text(min_size=1, max_size=10))] = parent.pop(last)
                elif action == "add":
                    parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
                else:
                    del parent[last]
            elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
                parent[last] = draw(values)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@st.composite
def mutated_text(draw: st.DrawFn) -> str | bytes:
    """The suite's text with random characters spliced in, or random bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    text = BASE
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 8))
        piece = draw(
            st.one_of(
                st.text(max_size=8), st.sampled_from(["&a ", "*a", "- ", ": ", "{", "[", "!!set ", "<<: "])
            )
        )
        text = text[:at] + piece + text[at + cut :]
    return text


def _load_and_expand(content: str | bytes) -> None:
    with contextlib.suppress(UserError):
        expand(parse_suite(content, "fuzz.yaml"), max_jobs=64)


@settings(derandomize=True, max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_data())
def test_mutated_values_load_or_raise_user_error(content: str) -> None:
    _load_and_expand(content)


@settings(derandomize=True, max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_text())
def test_mutated_text_loads_or_raises_user_error(content: str | bytes) -> None:
    _load_and_expand(content)
