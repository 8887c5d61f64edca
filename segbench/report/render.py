"""Renderers of a :class:`~segbench.report.table.Table`: markdown, LaTeX (booktabs), CSV, JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

from segbench.report.latex import to_latex
from segbench.report.table import Table, format_factor


def _cells(table: Table, row: Any) -> list[str]:
    out = [format_factor(row.factors.get(key)) for key, _ in table.factor_columns]
    for m in table.metric_columns:
        cell = row.cells[m.name]
        out.append(f"**{cell.text}**" if cell.best else cell.text)
    out += [row.cells["Δ" + m.name].text for m in table.delta_columns]
    return out


def markdown(table: Table) -> str:
    headers = table.headers()
    nf = len(table.factor_columns)
    align = [":---:"] * nf + ["---:"] * (len(headers) - nf)
    lines = [f"### {table.title}", ""]
    many = len(table.blocks) > 1 or table.blocks[0].name is not None
    for block in table.blocks:
        if many and block.name:
            lines += [f"**{block.name}**", ""]
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
    lines.append(f"*{table.caption}*")
    for note in table.notes:
        lines.append(f"\n- {note}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    records = table.records()
    buf = io.StringIO()
    fields: list[str] = []
    for rec in records:
        fields += [k for k in rec if k not in fields]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: _plain(v) for k, v in rec.items()})
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
