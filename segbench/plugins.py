"""What is named by an import path or published by another package, loaded when it is needed.

Why one module: models and datasets come from outside segbench the same two ways — a
suite may name any ``package.module:attribute``, and an installed distribution may
publish entries under an entry-point group (``segbench.models``, ``segbench.datasets``).
Both catalogs and the dataset layouts load through here, so an import path fails with
the same message wherever it is written, and reading a group never imports the
plugins in it (``segbench list`` and suite validation stay instant). Torch-free.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from segbench.errors import UserError, did_you_mean


def is_import_path(name: str) -> bool:
    """``package.module:attribute`` rather than a catalogued name."""
    return ":" in name


def load_object(path: str) -> Any:
    """Import ``package.module:attribute``; errors say what was tried."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UserError(f"'{path}' is not an import path of the form package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import '{module_name}' for '{path}': {exc}") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise UserError(f"module '{module_name}' has no '{attr}'{did_you_mean(attr, names)}") from None
    return obj


def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """The entry points of ``group`` in the installed distributions, by name; none is imported."""
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def describe(ep: metadata.EntryPoint) -> str:
    """How messages name a plugin: its entry point, as its distribution declares it."""
    return f"entry point '{ep.name} = {ep.value}' (group {ep.group})"


def load_entry_point(ep: metadata.EntryPoint) -> Any:
    """What ``ep`` names, imported now; a broken plugin is a UserError naming its entry point."""
    try:
        return load_object(ep.value)
    except UserError as exc:
        raise UserError(f"{describe(ep)}: {exc}") from None
