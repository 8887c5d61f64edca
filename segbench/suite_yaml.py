"""Reading a suite file: a bounded YAML composition and the line of every node.

Why apart from :mod:`segbench.config`: what a suite *means* (the pydantic models) and
how its text is *read* change for different reasons. This module turns text into plain
data plus a line index, and refuses what no suite needs before it can cost anything:
files past :data:`MAX_SUITE_BYTES`, duplicate keys, nesting past :data:`MAX_DEPTH`,
aliases expanding past :data:`ALIAS_BUDGET` nodes, values that are not plain JSON data.
Every error names ``file:line``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from segbench.errors import UserError
from segbench.options import json_problem

#: A suite is a few kilobytes; past this the file is refused before it is parsed.
MAX_SUITE_BYTES = 1 << 20
#: Collections nested deeper than this are refused (a suite needs fewer than ten levels).
MAX_DEPTH = 48
#: Nodes that aliases (``*name``) may add to the document beyond those written out:
#: a "billion laughs" file (aliases of aliases) stops here instead of filling the memory.
ALIAS_BUDGET = 100_000

try:  # libyaml scans and parses ~10x faster; the composition below stays in Python (its bounds)
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _SuiteLoader(
    *((_CParser,) if _CParser else (yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser)),
    Composer,
    SafeConstructor,
    Resolver,
):  # type: ignore[misc]
    """PyYAML's safe loader with the bounds a suite file needs, checked while composing.

    Duplicate keys are errors (YAML keeps the last one silently); collections nest at most
    :data:`MAX_DEPTH` deep; aliases may add at most :data:`ALIAS_BUDGET` nodes (each node's
    expanded size is known when it is composed, so a "billion laughs" file stops at its
    first levels) and never refer to a node that contains them. Dates stay strings: a
    suite has no timestamps, and ``2024-13-01`` must not raise from the constructor.
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str) -> None:
        if _CParser is not None:
            _CParser.__init__(self, text)
        else:  # pragma: no cover
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._aliased = 0
        self._open_anchors: set[str] = set()
        self._sizes: dict[int, int] = {}

    # CParser brings a composer of its own, in C and unbounded: use Composer's.
    get_single_node = Composer.get_single_node
    compose_document = Composer.compose_document
    compose_scalar_node = Composer.compose_scalar_node
    compose_sequence_node = Composer.compose_sequence_node

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise ComposerError(
                    None, None, f"alias *{event.anchor} refers to a node that contains it", event.start_mark
                )
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._aliased += self._sizes[id(target)]
                if self._aliased > ALIAS_BUDGET:
                    raise ComposerError(
                        None,
                        None,
                        f"aliases expand to more than {ALIAS_BUDGET:,} nodes; write the values out",
                        event.start_mark,
                    )
            return Composer.compose_node(self, parent, index)
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.add(anchor)
        self._depth += 1
        try:
            node = Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)  # type: ignore[arg-type]
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in children)
        return node

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = Composer.compose_mapping_node(self, anchor)
        first: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                line = key_node.start_mark.line + 1
                if key_node.value in first:
                    raise ComposerError(
                        None,
                        None,
                        f"duplicate key '{key_node.value}' (first at line {first[key_node.value]}, "
                        f"again at line {line})",
                        key_node.start_mark,
                    )
                first[key_node.value] = line
        return node


def _line_index(root: Node) -> dict[tuple[Any, ...], int]:
    """Path of every written node → its 1-based line (a mapping entry: its key's line).

    Each node is visited once, so an aliased subtree is indexed where it is written; a path
    through an alias falls back to the alias's own line (see :func:`_line_of`).
    """
    out: dict[tuple[Any, ...], int] = {}
    seen: set[int] = set()
    stack: list[tuple[tuple[Any, ...], Node]] = [((), root)]
    while stack:
        path, node = stack.pop()
        out.setdefault(path, node.start_mark.line + 1)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode):
                    key = (*path, key_node.value)
                    out.setdefault(key, key_node.start_mark.line + 1)
                    stack.append((key, value_node))
        elif isinstance(node, SequenceNode):
            stack.extend(((*path, i), item) for i, item in enumerate(node.value))
    return out


def compose(text: str, path: Path) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The suite's data and line index, from one bounded composition of the YAML."""
    try:
        loader = _SuiteLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a tagged value its constructor refuses
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:  # bounded by MAX_DEPTH; kept so no input can show a traceback
        raise UserError(f"{path}: not valid YAML: nested too deeply") from None
    return data, (_line_index(node) if node is not None else {})


def plain_data_problem(data: Any) -> tuple[tuple[Any, ...], str] | None:
    """(location, problem) of the first value that is not plain JSON data, or None.

    Everything in a suite ends up hashed and stored as JSON: a set, bytes or a
    non-finite number (``.inf``, ``.nan``) is refused where it is written.
    """
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return loc, f"the key {key!r} is not a string (quote it)"
                stack.append(((*loc, key), item))
        elif isinstance(value, list | tuple):
            stack.extend(((*loc, i), item) for i, item in enumerate(value))
        else:
            problem = json_problem(value)
            if problem:
                return loc, problem
    return None


def line_of(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest YAML node on ``loc`` that exists."""
    if len(loc) > 1 and loc[0] == "variants" and isinstance(loc[1], int) and ("variants", 0) not in lines:
        loc = ("variants", *loc[2:])  # a single block written as a mapping, not a list
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<suite>"


def decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
