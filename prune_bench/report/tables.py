"""Accuracy-per-task tables in markdown, LaTeX (booktabs) and CSV.

One row per (strategy, keep): accuracy on each task, their average, visual-token retention (into the
LLM / averaged over its layers / visible while decoding), prefill FLOPs relative to the unpruned model
under one named convention, and the change of the average vs the ``none`` reference row (in points).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from prune_bench.report.data import REFERENCE, mixed_units, reference_row
from prune_bench.runner.summary import SummaryRow

Format = Literal["md", "latex", "csv"]
FORMATS: tuple[str, ...] = ("md", "latex", "csv")
FLOPS_CONVENTIONS: tuple[str, ...] = ("exact", "paper")
FLOPS_NOTE = {
    "exact": "exact: LLM prefill, GQA-aware, causal attention",
    "paper": "paper: 4nd^2 + 2n^2d + 2ndm per LLM layer",
}

Cell = str | float | None  # None: not applicable (a task the row was not run on, no reference)


@dataclass(frozen=True)
class Column:
    """A table column: its header in text and CSV, how to show its numbers and which way is better."""

    header: str
    csv: str
    digits: int = 1
    better: Literal["high", "low"] | None = None  # bolded in LaTeX when set
    signed: bool = False


@dataclass
class Table:
    """Format-neutral table: cells hold raw numbers; the renderers format them."""

    columns: list[Column]
    rows: list[list[Cell]]
    groups: list[tuple[float, str] | None] = field(default_factory=list)  # None for the reference row
    flops: str = "exact"


def build_table(rows: Sequence[SummaryRow], flops: str = "exact") -> Table:
    """Lay out ``summarize`` rows: reference first, then blocks of one budget (keep, unit).

    ``flops`` names the FLOPs convention shown (``exact`` or ``paper``).
    """
    if flops not in FLOPS_CONVENTIONS:
        raise ValueError(f"flops convention must be one of {FLOPS_CONVENTIONS}, got {flops!r}")
    # Reference first, then one block per budget (largest keep first), strategies by name within it.
    rows = sorted(rows, key=lambda r: (r.strategy != REFERENCE, r.unit, -r.keep, r.strategy))
    tasks = sorted({t for r in rows for t in r.accuracy})
    ref = reference_row(rows)
    with_unit = mixed_units(rows)
    columns = [Column("strategy", "strategy"), Column("keep", "keep")]
    if with_unit:
        columns.append(Column("unit", "unit"))
    columns += [Column(t, f"acc_{t}", better="high") for t in tasks]
    columns += [
        Column("avg", "average", better="high"),
        Column("ret. input", "retention_input", digits=3),
        Column("ret. layer-avg", "retention_layer_average", digits=3),
        Column("ret. decode", "retention_decode", digits=3),
        Column(f"rel. FLOPs ({flops})", f"flops_{flops}", digits=3, better="low"),
        Column(f"Δ avg vs {REFERENCE}", f"delta_vs_{REFERENCE}", better="high", signed=True),
    ]
    cells: list[list[Cell]] = []
    groups: list[tuple[float, str] | None] = []
    for r in rows:
        line: list[Cell] = [r.strategy, r.keep]
        if with_unit:
            line.append(r.unit)
        line += [r.accuracy.get(t) for t in tasks]
        line += [
            r.average,
            r.retention["input"],
            r.retention["layer_average"],
            r.retention["decode"],
            r.flops_ratio[flops],
            None if ref is None else r.average - ref.average,
        ]
        cells.append(line)
        groups.append(None if r.strategy == REFERENCE else (r.keep, r.unit))
    return Table(columns, cells, groups, flops)


def _fmt(value: Cell, col: Column) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if col.csv == "keep":
        return f"{value:g}"
    return f"{value:+.{col.digits}f}" if col.signed else f"{value:.{col.digits}f}"


def best_cells(table: Table) -> set[tuple[int, int]]:
    """(row, column) of the best value of each scored column, among pruned rows of the same budget.

    The reference row is never bolded (it is the ceiling, not a competitor); rows are compared within
    one (keep, unit), as papers compare methods at one retention; ties, at the precision shown, all win.
    """
    best: set[tuple[int, int]] = set()
    for j, col in enumerate(table.columns):
        if col.better is None:
            continue
        by_group: dict[tuple[float, str], list[tuple[float, int]]] = {}
        for i, group in enumerate(table.groups):
            value = table.rows[i][j]
            if group is None or not isinstance(value, float | int) or math.isnan(value):
                continue
            by_group.setdefault(group, []).append((round(value, col.digits), i))
        for entries in by_group.values():
            target = (max if col.better == "high" else min)(v for v, _ in entries)
            best.update((i, j) for v, i in entries if v == target)
    return best


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured markdown table, with a note on the units below it."""
    head = [c.header for c in table.columns]
    align = [":---" if c.csv in ("strategy", "unit") else "---:" for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    for i, row in enumerate(table.rows):
        cells = [_display(row, j, i, table) for j in range(len(row))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _note(table) + "\n"


def _display(row: list[Cell], j: int, i: int, table: Table) -> str:
    col = table.columns[j]
    if col.signed and table.groups[i] is None:
        return "—"  # the reference row's change vs itself
    return _fmt(row[j], col)


def _note(table: Table) -> str:
    return (
        f"Accuracy in %, avg = mean over tasks; ret. = fraction of visual tokens kept (input to the LLM, "
        f"averaged over its layers, visible while decoding); rel. FLOPs = prefill FLOPs / unpruned "
        f"({FLOPS_NOTE[table.flops]}); Δ in accuracy points vs {REFERENCE}."
    )


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in text)


def _latex_cell(text: str) -> str:
    if text == "—":
        return "--"
    if text.startswith("-") and len(text) > 1:
        return "$-$" + text[1:]
    if text.startswith("+"):
        return "$+$" + text[1:]
    return latex_escape(text)


def to_latex(table: Table) -> str:
    """A booktabs ``tabular``: reference row first, a rule between budgets, best per column in bold."""
    best = best_cells(table)
    spec = "".join("l" if c.csv in ("strategy", "unit") else "r" for c in table.columns)
    heads = [latex_escape(c.header).replace("Δ", r"$\Delta$") for c in table.columns]
    note = latex_escape(_note(table)).replace("Δ", "Delta")
    out = [f"% {note}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(heads) + r" \\", r"\midrule"]
    for i, row in enumerate(table.rows):
        if i > 0 and table.groups[i] != table.groups[i - 1]:
            out.append(r"\midrule")
        cells = []
        for j in range(len(row)):
            text = _latex_cell(_display(row, j, i, table))
            cells.append(rf"\textbf{{{text}}}" if (i, j) in best else text)
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    """CSV with machine-friendly headers and raw numbers (4 decimals); empty where not applicable."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.csv for c in table.columns])
    for row in table.rows:
        writer.writerow([_csv_cell(v, c) for v, c in zip(row, table.columns, strict=True)])
    return buf.getvalue()


def _csv_cell(value: Cell, col: Column) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return f"{value:g}" if col.csv == "keep" else f"{value:.4f}"


def render(rows: Sequence[SummaryRow], fmt: str = "md", flops: str = "exact") -> str:
    """``summarize`` rows as a table in ``fmt`` (md, latex or csv), FLOPs under convention ``flops``."""
    table = build_table(rows, flops)
    renderers = {"md": to_markdown, "latex": to_latex, "csv": to_csv}
    if fmt not in renderers:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return renderers[fmt](table)
