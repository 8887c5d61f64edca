"""``segbench datasets ...``: check a dataset tree on disk, or preview samples as a picture.

Thin, like the main CLI: the commands parse options and call
:mod:`segbench.data.check` / :mod:`segbench.data.preview`. numpy, PIL and torch
are imported inside the commands, so mounting this sub-app costs nothing.
Bad input (an unknown dataset, a missing root) and an unclean tree exit with 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from segbench.errors import UserError

# Completion and exception display are the root app's (segbench.cli): Typer reads them only there.
app = typer.Typer(
    name="datasets", help="Check a dataset tree on disk, or preview samples.", no_args_is_help=True
)


def register(parent: typer.Typer) -> None:
    """Add the ``datasets`` group to the segbench app (every command group mounts through ``register``)."""
    parent.add_typer(app, name="datasets")


RootOption = Annotated[
    Path | None, typer.Option("--root", help="the dataset's folder; default $SEGBENCH_DATA/NAME")
]
SplitOption = Annotated[str | None, typer.Option("--split", help="one split (default: all present)")]
OptionsOption = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", help="a dataset option as KEY=VALUE (YAML value), repeatable"),
]


def _parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["size=96", "labels=labelIds"]`` → ``{"size": 96, "labels": "labelIds"}`` (values read as YAML)."""
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--option {pair!r}: expected KEY=VALUE, e.g. --option size=96")
        options[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return options


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input prints one line and exits 2, whether or not the main CLI wraps this sub-app."""
    try:
        yield
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(UserError.exit_code) from None


@app.command()
def check(
    name: Annotated[str, typer.Argument(help="dataset name (see `segbench list datasets`)")],
    root: RootOption = None,
    split: SplitOption = None,
    option: OptionsOption = None,
) -> None:
    """Validate a tree: pairs per split, unpaired files, size mismatches, label values out of range."""
    from segbench.data.catalog import get_dataset_entry
    from segbench.data.check import check_tree

    with _user_errors():
        report = check_tree(name, root, split, _parse_options(option))
    typer.echo(f"{name} at {report.root}")
    for each, count in report.counts.items():
        typer.echo(f"  {each}: {count} pairs")
    if report.clean:
        typer.echo("clean: no problems")
        return
    typer.echo(f"{len(report.problems)} problem(s):")
    for problem in report.problems:
        typer.echo(f"  {problem}")
    typer.echo(get_dataset_entry(name).describe_layout())
    raise typer.Exit(UserError.exit_code)


@app.command()
def preview(
    name: Annotated[str, typer.Argument(help="dataset name (see `segbench list datasets`)")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write")],
    root: RootOption = None,
    n: Annotated[int, typer.Option("--n", min=1, max=64, help="number of samples")] = 8,
    split: Annotated[str, typer.Option("--split", help="which split")] = "val",
    tile: Annotated[int, typer.Option("--tile", min=32, max=1024, help="tile side in px")] = 160,
    option: OptionsOption = None,
) -> None:
    """Write a grid of samples and their colour-coded masks (palette; ignored pixels white)."""
    from segbench.data import build_dataset
    from segbench.data.preview import preview_grid

    with _user_errors():
        dataset = build_dataset(name, split, root=root, **_parse_options(option))
        picture = preview_grid(dataset, count=n, tile=tile)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    typer.echo(f"wrote {out} ({min(n, len(dataset))} {split} samples of {name})")
