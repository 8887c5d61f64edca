"""Command-line options shared by the command groups (kept torch-free and import-light)."""

from __future__ import annotations

from typing import Annotated

import typer

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL; default $SEGBENCH_DB, else sqlite:///results/segbench.db"),
]
