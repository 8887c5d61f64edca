"""Renderers of a :class:`~segbench.report.table.Table`: markdown, LaTeX (booktabs), CSV, JSON.

Labels, factor values and captions are the user's text and go out escaped:
markdown escapes ``|`` in cells (it would shift them), ``<``, ``>`` and entity-like
``&`` everywhere (a label is never markup in a rendered report) and line breaks; CSV text cells that
a spreadsheet would run as a formula get a leading ``'`` (OWASP's CSV-injection
advice), while numbers, negative ones included, stay numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable
from typing import Any

from segbench.report.cells import Row, Table, laid_out
from segbench.report.latex import to_latex

_ENTITY = re.compile(r"&(?=#?\w+;)")


def _html_safe(text: str) -> str:
    """``<`` and ``>`` as entities, and ``&`` where it would start one; a lone ``&`` stays readable."""
    return _ENTITY.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")


def md_text(text: str) -> str:
    """User text in markdown prose: no markup, one line."""
    return _html_safe(" ".join(text.splitlines()))


def md_cell(text: str) -> str:
    """User text in a markdown table cell: no markup, ``|`` escaped, line breaks as ``<br>``."""
    return "<br>".join(_html_safe(line).replace("|", "\\|") for line in text.splitlines())


def md_bold(text: str) -> str:
    """A best value, in tables and pivots alike."""
    return f"**{text}**"


def _cells(table: Table, row: Row) -> list[str]:
    return laid_out(table, row, md_cell, md_cell, md_bold)


def markdown(table: Table) -> str:
    headers = [md_cell(h) for h in table.headers()]
    nf = len(table.factor_columns)
    align = [":---:"] * nf + ["---:"] * (len(headers) - nf)
    lines = [f"### {md_text(table.title)}", ""]
    many = len(table.blocks) > 1 or table.blocks[0].name is not None
    for block in table.blocks:
        if many and block.name:
            lines += [f"**{md_text(block.name)}**", ""]
        # Each block is its own table: a block without named variants has no variant column.
        keep = [
            i
            for i in range(len(headers))
            if i >= nf
            or table.factor_columns[i][0] != "variant"
            or any(row.factors.get("variant") for row in block.rows)
        ]
        lines.append("| " + " | ".join(headers[i] for i in keep) + " |")
        lines.append("|" + "|".join(align[i] for i in keep) + "|")
        for row in block.rows:
            cells = _cells(table, row)
            lines.append("| " + " | ".join(cells[i] or " " for i in keep) + " |")
        lines.append("")
    lines.append(f"*{md_text(table.caption)}*")
    for note in table.notes:
        lines.append(f"\n- {md_text(note)}")
    return "\n".join(lines) + "\n"


#: a text cell starting with one of these is run as a formula by spreadsheets
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A CSV cell no spreadsheet runs: formula-like text gets a leading ``'``; numbers are untouched."""
    value = _plain(value)
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def to_csv(table: Table) -> str:
    records = table.records()
    buf = io.StringIO()
    fields: list[str] = []
    for rec in records:
        fields += [k for k in rec if k not in fields]
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(name) for name in fields])
    for rec in records:
        writer.writerow([csv_cell(rec.get(name)) for name in fields])
    return buf.getvalue()


def to_json(table: Table) -> str:
    doc = {
        "title": table.title,
        "caption": table.caption,
        "columns": {m.name: {"header": m.header, "scale": m.scale} for m in table.metric_columns},
        "rows": [{k: _plain(v) for k, v in rec.items()} for rec in table.records()],
        "notes": table.notes,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


RENDERERS: dict[str, Callable[[Table], str]] = {
    "markdown": markdown,
    "latex": to_latex,
    "csv": to_csv,
    "json": to_json,
}
