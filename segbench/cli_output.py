"""What the ``segbench`` command line prints and writes: the dry-run job list, reports to files.

Apart from :mod:`segbench.cli` so that the commands there stay one screen each: they
parse and call, and this module lays out their output. rich is imported inside.
"""

from __future__ import annotations

import sys
from pathlib import Path

from segbench.errors import UserError


def console(stderr: bool = False):  # type: ignore[no-untyped-def]
    """A rich console (imported here, when a command prints)."""
    from rich.console import Console

    return Console(stderr=stderr)


#: Past this many jobs ``--dry-run`` prints tab-separated columns instead of a rich table.
_RICH_TABLE_ROWS = 500


def print_jobs(name: str, jobs: list) -> None:  # type: ignore[type-arg]
    """The expanded jobs; what every job shares (model, dataset, seed, stages) goes in the title."""
    from rich.table import Table

    from segbench.suite import varied_factors

    factors = varied_factors(jobs)
    shared = []
    columns = ["#", "job key"]
    per_job = {
        "model": [j.model_label for j in jobs],
        "dataset": [j.dataset_label for j in jobs],
        "seed": [str(j.seed) for j in jobs],
        "stages": [",".join(j.stages) for j in jobs],
    }
    for col, values in per_job.items():
        if len(set(values)) == 1:
            shared.append(f"{col} {values[0]}")
        else:
            columns.append(col)
    title, caption = f"{name}: {len(jobs)} job(s)", " · ".join(shared)
    if len(jobs) > _RICH_TABLE_ROWS:
        # rich lays a table out cell by cell (milliseconds a row): a big grid prints plain columns.
        head = [*columns, *factors]
        lines = [title, caption, "\t".join(head)]
        for i, job in enumerate(jobs):
            cells = [str(i), job.job_key, *(per_job[col][i] for col in columns[2:])]
            lines.append("\t".join([*cells, *(factor_text(job.factors.get(f)) for f in factors)]))
        sys.stdout.write("\n".join(lines) + "\n")
        return
    table = Table(title=title, caption=caption)
    for col in columns:
        table.add_column(col, no_wrap=col in ("#", "job key"))
    for col in factors:
        table.add_column(col, overflow="fold")
    for i, job in enumerate(jobs):
        cells = [str(i), job.job_key]
        cells += [per_job[col][i] for col in columns[2:]]
        table.add_row(*cells, *(factor_text(job.factors.get(f)) for f in factors))
    console().print(table)


def factor_text(value: object) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def emit(text: str, out: Path | None) -> None:
    """Print ``text``, or write it to ``out`` whole or not at all.

    Missing parent folders are created (``reports/x.md`` in a fresh checkout just
    works); the text goes to a temporary file beside ``out`` that replaces it in
    one step, so a full disk or an interrupt never leaves half a report behind.
    """
    if out is None:
        sys.stdout.write(text)
        return
    import os
    import tempfile

    if out.is_dir():
        raise UserError(f"--out {out}: is a directory; give a file name")
    tmp: str | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # the permissions a plain write would give, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, out)
        tmp = None
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write the report: {os_reason(exc)}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    console(stderr=True).print(f"wrote {out}")


def os_reason(exc: OSError) -> str:
    """An OSError as a reason a user can act on (``No space left on device: 'reports'``)."""
    where = f": '{exc.filename}'" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"
