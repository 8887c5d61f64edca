"""LaTeX rendering: booktabs structure, bold best, ✓, escaping, blocks, caption and label."""

from __future__ import annotations

import re

import pytest

from segbench.metrics import metric as column
from segbench.report.cells import Block, Cell, Row, Table
from segbench.report.latex import escape, label_of, to_latex


def make_table(blocks: list[Block], notes: list[str] | None = None, title: str = "psp_ablation") -> Table:
    return Table(
        title=title,
        caption="PSPNet on VOC_2012: 100% of val & no CRF. Input 1×3×473×473.",
        factor_columns=[("ppm", "PPM"), ("aux_weight", "aux_weight")],
        metric_columns=[column("mIoU"), column("latency_ms")],
        delta_columns=[column("mIoU")],
        blocks=blocks,
        notes=notes or [],
    )


def row(ppm: bool, aux: float | None, miou: str, latency: str, delta: str, best: bool = False) -> Row:
    return Row(
        factors={"ppm": ppm, "aux_weight": aux},
        cells={
            "mIoU": Cell(miou, 0.0, best=best),
            "latency_ms": Cell(latency, 0.0),
            "ΔmIoU": Cell(delta, 0.0),
        },
        status="done",
        seeds=1,
    )


TWO_BLOCKS = [
    Block(
        "pyramid pooling",
        [row(False, None, "37.23", "12.10", "baseline"), row(True, None, "41.07", "14.00", "+3.84")],
    ),
    Block(
        "aux loss",
        [
            row(True, 0.4, "41.68 ± 0.12", "14.00", "+4.45", best=True),
            row(True, 0.9, "36.99", "14.10", "-0.24"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("text", "latex"),
    [
        ("aux_weight", r"aux\_weight"),
        ("100% & #1", r"100\% \& \#1"),
        ("$5 {x}", r"\$5 \{x\}"),
        ("a~b^c", r"a\textasciitilde{}b\textasciicircum{}c"),
        (r"C:\runs", r"C:\textbackslash{}runs"),
        ("41.68 ± 0.12", r"41.68 $\pm$ 0.12"),
        ("1×3×473×473", r"1$\times$3$\times$473$\times$473"),
        ("Δ mIoU (%)", r"$\Delta$ mIoU (\%)"),
        ("✓", r"\checkmark{}"),
        ("—", "---"),
    ],
)
def test_escape(text: str, latex: str) -> None:
    assert escape(text) == latex


def test_booktabs_layout_with_blocks() -> None:
    tex = to_latex(make_table(TWO_BLOCKS))
    lines = tex.splitlines()
    assert lines[1] == r"\begin{table}[t]" and lines[-1] == r"\end{table}"
    assert r"\begin{tabular}{@{}ccrrr@{}}" in tex  # factors centred, numbers right-aligned
    assert tex.count(r"\toprule") == 1 and tex.count(r"\bottomrule") == 1
    # header rule, then one \midrule opening each block, each followed by its label row
    assert tex.count(r"\midrule") == 2
    for name in ("pyramid pooling", "aux loss"):
        i = lines.index(rf"    \multicolumn{{5}}{{@{{}}l}}{{\textit{{{name}}}}} \\")
        assert lines[i - 1] == r"    \midrule"
    assert r"\hline" not in tex and "|" not in tex.split(r"\begin{tabular}")[1].splitlines()[0]
    header = next(line for line in lines if line.strip().startswith("PPM"))
    assert header.strip() == r"PPM & aux\_weight & mIoU (\%) & latency (ms) & $\Delta$ mIoU (\%) \\"


def test_rows_bold_best_checkmark_and_signed_delta() -> None:
    tex = to_latex(make_table(TWO_BLOCKS))
    rows = [line.strip() for line in tex.splitlines() if line.strip().endswith(r"\\") and "&" in line][1:]
    assert rows == [
        r"&  & 37.23 & 12.10 & baseline \\",
        r"\checkmark{} &  & 41.07 & 14.00 & $+$3.84 \\",
        r"\checkmark{} & 0.4 & \textbf{41.68 $\pm$ 0.12} & 14.00 & $+$4.45 \\",
        r"\checkmark{} & 0.9 & 36.99 & 14.10 & $-$0.24 \\",
    ]


def test_caption_label_and_notes() -> None:
    tex = to_latex(make_table(TWO_BLOCKS, notes=["failed: seed=1: CUDA out of memory (50% used)"]))
    assert (
        r"\caption{PSPNet on VOC\_2012: 100\% of val \& no CRF. Input 1$\times$3$\times$473$\times$473.}"
        in tex
    )
    assert r"\label{tab:psp-ablation}" in tex
    assert r"failed: seed=1: CUDA out of memory (50\% used)\par" in tex
    # notes come after the tabular and inside the table float, so they travel with it
    assert tex.index(r"\end{tabular}") < tex.index("CUDA out of memory") < tex.index(r"\end{table}")


def test_single_unnamed_block_has_no_label_row() -> None:
    tex = to_latex(make_table([Block(None, TWO_BLOCKS[0].rows)]))
    assert r"\multicolumn" not in tex
    assert tex.count(r"\midrule") == 1


def test_braces_balance_and_no_raw_specials() -> None:
    nasty = Block("a_b & c%", [row(True, None, "1.00", "2.00", "baseline")])
    nasty.rows[0].factors["aux_weight"] = "x_{y}#~"
    tex = to_latex(make_table([nasty], notes=["50% & {done}"], title="my_suite #2"))
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    depth = 0
    for ch in re.sub(r"\\[{}]", "", body):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    # every special character is escaped: none is left bare outside the LaTeX the renderer wrote itself
    stripped = re.sub(r"\\[_%&#${}]|\\textasciitilde\{\}|\\\w+|[{}]|\$\\pm\$|&", "", body)
    assert not re.search(r"[_%#~^]", stripped)


def test_label_of() -> None:
    assert label_of("DeepLab v3+ (Table 3)") == "tab:deeplab-v3-table-3"
    assert label_of("___") == "tab:segbench"
