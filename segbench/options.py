"""Typed options of catalogued models and datasets: one declaration, one check, torch-free.

Why one module: a model option (``ppm``) and a dataset option (``size``) are the same
idea, a named value with a type, a default and limits, and both must be refused at load
time when wrong. A YAML string ``"false"`` for a boolean would otherwise reach the builder
as a truthy string and build the module the table says is off; so every value is checked
against its declared ``kind`` before a job is recorded. Options of models without a
catalog entry (``package.module:factory`` and plugin factories) have no declared types:
they are passed as they are, but must still be plain JSON data (they are hashed into the
job key and stored).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench.errors import UserError, did_you_mean

#: The ``kind`` names an option may declare.
KINDS = ("any", "int", "float", "bool", "str", "list[int]", "file", "dir")

_TRUE_WORDS = {"true", "yes", "on", "y"}
_FALSE_WORDS = {"false", "no", "off", "n"}


def literal_hint(kind: str, value: Any) -> str:
    """' (did you mean false?)' when ``value`` is a quoted spelling of a ``kind`` literal.

    YAML reads ``ppm: "false"`` (or ``'no'``) as a string; the user meant the boolean.
    """
    if not isinstance(value, str):
        return ""
    word = value.strip().lower()
    if kind == "bool" and word in _TRUE_WORDS | _FALSE_WORDS:
        return f" (did you mean {'true' if word in _TRUE_WORDS else 'false'}, unquoted?)"
    if kind in ("int", "float"):
        try:
            number = int(word) if kind == "int" else float(word)
        except ValueError:
            return ""
        if math.isfinite(number):
            return f" (did you mean {word}, unquoted?)"
    return ""


@dataclass(frozen=True)
class OptionSpec:
    """One option of a model or a dataset (an ablation factor, a size, a file).

    ``kind`` is one of :data:`KINDS`: ``bool`` takes only true/false, ``int`` no booleans,
    ``float`` any finite number, ``list[int]`` a list of integers, ``file`` / ``dir`` a path
    that must exist when the suite loads. ``None`` is accepted where the default is None (it
    means "the default behaviour") or where it is one of ``choices``. ``minimum`` /
    ``maximum`` bound numbers (every element of a list) inclusively; ``above`` / ``below``
    exclusively (a width multiplier is > 0, a drop-out probability < 1).
    """

    name: str
    default: Any
    help: str
    kind: str = "any"
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option '{self.name}': kind '{self.kind}' is not one of {', '.join(KINDS)}")

    def check(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this option (a phrase after the option's name), or None."""
        if value is None and (self.default is None or (self.choices is not None and None in self.choices)):
            return None
        problem = self._type_problem(value)
        if problem:
            return problem
        if self.choices is not None and _freeze(value) not in self.choices:
            hint = (
                did_you_mean(value, [c for c in self.choices if isinstance(c, str)])
                if isinstance(value, str)
                else ""
            )
            return f"= {value!r} is not one of {', '.join(repr(c) for c in self.choices)}{hint}"
        numbers = value if self.kind == "list[int]" else [value] if self.kind in ("int", "float") else []
        for number in numbers:
            if self.minimum is not None and number < self.minimum:
                return f"= {value!r} is below the minimum {self.minimum:g}"
            if self.maximum is not None and number > self.maximum:
                return f"= {value!r} is above the maximum {self.maximum:g}"
            if self.above is not None and number <= self.above:
                return f"= {value!r} must be greater than {self.above:g}"
            if self.below is not None and number >= self.below:
                return f"= {value!r} must be less than {self.below:g}"
        if self.kind == "file" and not is_file(value):
            return f"= {value!r}: the file does not exist (paths are local; nothing downloads)"
        if self.kind == "dir" and not is_dir(value):
            return f"= {value!r}: the directory does not exist"
        return None

    def _type_problem(self, value: Any) -> str | None:
        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        ok = {
            "any": lambda v: json_problem(v) is None,
            "int": is_int,
            "float": lambda v: (is_int(v) or isinstance(v, float)) and math.isfinite(v),
            "bool": lambda v: isinstance(v, bool),
            "str": lambda v: isinstance(v, str),
            "list[int]": lambda v: isinstance(v, list | tuple) and all(is_int(x) for x in v),
            "file": lambda v: isinstance(v, str) and bool(v),
            "dir": lambda v: isinstance(v, str) and bool(v),
        }[self.kind]
        if ok(value):
            return None
        if self.kind == "any":
            return f"= {value!r}: {json_problem(value)}"
        expected = (
            "a finite number" if self.kind == "float" else "a path" if self.kind in ("file", "dir") else ""
        )
        return (
            f"must be of type {self.kind}{f' ({expected})' if expected else ''}, got {value!r}"
            + literal_hint(self.kind, value)
        )


def is_file(path: str | Path) -> bool:
    """``path`` names a file; False, not an exception, for names no file can have (a NUL, ``~x``)."""
    try:
        return Path(path).expanduser().is_file()
    except (OSError, ValueError, RuntimeError):
        return False


def is_dir(path: str | Path) -> bool:
    """``path`` names a directory; False for names no directory can have."""
    try:
        return Path(path).expanduser().is_dir()
    except (OSError, ValueError, RuntimeError):
        return False


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list | tuple) else value


def resolve_options(
    specs: tuple[OptionSpec, ...], options: Mapping[str, Any], owner: str, where: str = ""
) -> dict[str, Any]:
    """``options`` checked against ``specs`` with the defaults filled in.

    ``owner`` names what the options belong to in messages ("model 'pspnet'"); ``where`` is
    the ``file:line`` prefix. Unknown names and ill-typed or out-of-range values are
    UserErrors.
    """
    prefix = f"{where}: " if where else ""
    known = {spec.name: spec for spec in specs}
    for key, value in options.items():
        if key not in known:
            raise UserError(
                f"{prefix}{owner} has no option '{key}'{did_you_mean(key, known)}; "
                f"options: {', '.join(known) or '(none)'}"
            )
        problem = known[key].check(value)
        if problem:
            raise UserError(f"{prefix}{owner} option '{key}' {problem}")
    resolved = {spec.name: spec.default for spec in specs}
    resolved.update(options)
    return resolved


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` is not plain JSON data (str keys, finite numbers), or None.

    Options of models without a catalog are hashed into the job key and stored as JSON,
    so a YAML date, a set or ``.nan`` there must be refused, not crash the recorder.
    """
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    if depth > 32:
        return "nested too deeply"
    if isinstance(value, list | tuple):
        return next((p for p in (json_problem(v, depth + 1) for v in value) if p), None)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return "mapping keys must be strings"
        return next((p for p in (json_problem(v, depth + 1) for v in value.values()) if p), None)
    return f"a {type(value).__name__} is not plain data (strings, numbers, booleans, lists, mappings)"


def check_plain_options(options: Mapping[str, Any], owner: str, where: str = "") -> dict[str, Any]:
    """Options of a model without a catalog: passed as they are, but plain JSON data."""
    prefix = f"{where}: " if where else ""
    for key, value in options.items():
        problem = json_problem(value)
        if problem:
            raise UserError(f"{prefix}{owner} option '{key}' = {value!r}: {problem}")
    return dict(options)
