"""Accuracy-per-task tables in markdown, LaTeX (booktabs) and CSV.

One row per (strategy, keep): accuracy on each task, their average, visual-token retention (into the
LLM / averaged over its layers / visible while decoding), prefill FLOPs relative to the unpruned model
under one named convention, and the change of the average vs the ``none`` reference row (in points).
The best pruned value of each scored column within one budget is bold (markdown, LaTeX).

``paper_layout=True`` prints it as pruning papers do: every accuracy also as a percentage of the
unpruned model (``52.0 (94.5%)``), the absolute prefill FLOPs per item beside the relative ones, and in
CSV a ``*_pct_full`` column per accuracy plus a ``best`` column naming the columns a row wins.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from prune_bench.core.flops import CONVENTIONS
from prune_bench.report.data import REFERENCE, mixed_units, reference_row
from prune_bench.runner.summary import SummaryRow

FORMATS: tuple[str, ...] = ("md", "markdown", "latex", "csv")
#: what each FLOPs convention of :data:`prune_bench.core.flops.CONVENTIONS` counts, for the table note
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
    better: Literal["high", "low"] | None = None  # best value bold when set
    signed: bool = False
    relative: bool = False  # also shown as a percentage of the reference row (paper layout)
    significant: bool = False  # ``digits`` significant figures instead of decimals


@dataclass
class Table:
    """Format-neutral table: cells hold raw numbers; the renderers format them."""

    columns: list[Column]
    rows: list[list[Cell]]
    groups: list[tuple[float, str] | None] = field(default_factory=list)  # None for the reference row
    flops: str = "exact"
    reference: list[Cell] | None = None  # the reference row's cells, for percentages of it
    paper_layout: bool = False


def flops_scale(values: Sequence[float]) -> tuple[float, str]:
    """(divisor, unit) that shows FLOPs counts with a leading digit: TFLOPs for real models, GFLOPs or
    MFLOPs for the shipped small one."""
    top = max(values, default=0.0)
    for scale, unit in ((1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs")):
        if top >= scale:
            return scale, unit
    return 1.0, "FLOPs"


def build_table(rows: Sequence[SummaryRow], flops: str = "exact", paper_layout: bool = False) -> Table:
    """Lay out ``summarize`` rows: reference first, then blocks of one budget (keep, unit).

    ``flops`` names the FLOPs convention shown (``exact`` or ``paper``); ``paper_layout`` adds the
    percentages of the reference and the absolute prefill FLOPs (see the module docstring).
    """
    if flops not in CONVENTIONS:
        raise ValueError(f"flops convention must be one of {CONVENTIONS}, got {flops!r}")
    # Reference first, then one block per budget (largest keep first), strategies by name within it.
    rows = sorted(rows, key=lambda r: (r.strategy != REFERENCE, r.unit, -r.keep, r.strategy))
    tasks = sorted({t for r in rows for t in r.accuracy})
    ref = reference_row(rows)
    with_unit = mixed_units(rows)
    columns = [Column("strategy", "strategy"), Column("keep", "keep")]
    if with_unit:
        columns.append(Column("unit", "unit"))
    columns.append(Column("n", "n"))  # items behind the row: every cell is a mean over these
    rel = paper_layout and ref is not None
    columns += [Column(t, f"acc_{t}", better="high", relative=rel) for t in tasks]
    columns += [
        Column("avg", "average", better="high", relative=rel),
        Column("ret. input", "retention_input", digits=3),
        Column("ret. layer-avg", "retention_layer_average", digits=3),
        Column("ret. decode", "retention_decode", digits=3),
    ]
    scale, unit = flops_scale([r.flops[flops] for r in rows])
    if paper_layout:
        columns.append(
            Column(f"prefill {unit}", f"prefill_{unit.lower()}_{flops}", digits=3, significant=True)
        )
    columns += [
        Column(f"rel. FLOPs ({flops})", f"flops_{flops}", digits=3, better="low"),
        Column(f"Δ avg vs {REFERENCE}", f"delta_vs_{REFERENCE}", better="high", signed=True),
    ]
    cells: list[list[Cell]] = []
    groups: list[tuple[float, str] | None] = []
    for r in rows:
        line: list[Cell] = [r.strategy, r.keep]
        if with_unit:
            line.append(r.unit)
        line.append(r.items)
        line += [r.accuracy.get(t) for t in tasks]
        line += [
            r.average,
            r.retention["input"],
            r.retention["layer_average"],
            r.retention["decode"],
            *([r.flops[flops] / scale] if paper_layout else []),
            r.flops_ratio[flops],
            None if ref is None else r.average - ref.average,
        ]
        cells.append(line)
        groups.append(None if r.strategy == REFERENCE else (r.keep, r.unit))
    reference = cells[rows.index(ref)] if ref is not None else None
    return Table(columns, cells, groups, flops, reference, paper_layout)


def _fmt(value: Cell, col: Column) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if col.csv in ("keep", "n"):
        return f"{value:g}"
    if col.significant:  # trailing zeros kept (1.30, not 1.3), no bare trailing point (123, not 123.)
        return f"{value:#.{col.digits}g}".rstrip(".")
    return f"{value:+.{col.digits}f}" if col.signed else f"{value:.{col.digits}f}"


def percent_of_reference(table: Table, i: int, j: int) -> float | None:
    """Cell (i, j) as a percentage of the reference row's cell in column j (None where undefined)."""
    value = table.rows[i][j]
    ref = table.reference[j] if table.reference is not None else None
    if not table.columns[j].relative or table.groups[i] is None:
        return None
    if not isinstance(value, float | int) or not isinstance(ref, float | int) or not ref:
        return None
    return 100.0 * value / ref


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
    """A GitHub-flavoured markdown table, best per budget in bold, with a note on the units below it."""
    best = best_cells(table)
    head = [c.header for c in table.columns]
    align = [":---" if c.csv in ("strategy", "unit") else "---:" for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    for i, row in enumerate(table.rows):
        cells = []
        for j in range(len(row)):
            text = _display(row, j, i, table)
            text = f"**{text}**" if (i, j) in best else text
            pct = percent_of_reference(table, i, j)
            cells.append(text if pct is None else f"{text} ({pct:.1f}%)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _note(table) + "\n"


def _display(row: list[Cell], j: int, i: int, table: Table) -> str:
    col = table.columns[j]
    if col.signed and table.groups[i] is None:
        return "—"  # the reference row's change vs itself
    return _fmt(row[j], col)


def _note(table: Table) -> str:
    extra = ""
    if table.paper_layout:
        extra = (
            f" In brackets: % of the unpruned model ({REFERENCE}); prefill FLOPs are per item."
            if table.reference is not None
            else " Prefill FLOPs are per item."
        )
    return (
        f"Accuracy in %, avg = mean over tasks; ret. = fraction of visual tokens kept (input to the LLM, "
        f"averaged over its layers, visible while decoding); rel. FLOPs = prefill FLOPs / unpruned "
        f"({FLOPS_NOTE[table.flops]}); Δ in accuracy points vs {REFERENCE}; best per budget in bold." + extra
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
            text = rf"\textbf{{{text}}}" if (i, j) in best else text
            pct = percent_of_reference(table, i, j)
            cells.append(text if pct is None else rf"{text} {{\scriptsize({pct:.1f}\%)}}")
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    """CSV with machine-friendly headers and raw numbers (4 decimals); empty where not applicable.

    In the paper layout each relative column gets a ``<column>_pct_full`` twin and a last ``best``
    column lists the columns where the row is best within its budget (``;``-separated).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    best = best_cells(table)
    header: list[str] = []
    for c in table.columns:
        header += [c.csv, f"{c.csv}_pct_full"] if c.relative else [c.csv]
    writer.writerow(header + (["best"] if table.paper_layout else []))
    for i, row in enumerate(table.rows):
        line: list[str] = []
        for j, (v, c) in enumerate(zip(row, table.columns, strict=True)):
            line.append(_csv_cell(v, c))
            if c.relative:
                pct = percent_of_reference(table, i, j)
                line.append("" if pct is None else f"{pct:.2f}")
        if table.paper_layout:
            line.append(";".join(c.csv for j, c in enumerate(table.columns) if (i, j) in best))
        writer.writerow(line)
    return buf.getvalue()


def _csv_cell(value: Cell, col: Column) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if col.csv in ("keep", "n") or col.significant:
        return f"{value:.6g}"
    return f"{value:.4f}"


def render(
    rows: Sequence[SummaryRow], fmt: str = "md", flops: str = "exact", paper_layout: bool = False
) -> str:
    """``summarize`` rows as a table in ``fmt`` (markdown/md, latex or csv), FLOPs under convention
    ``flops``; ``paper_layout`` as in the module docstring."""
    renderers = {"md": to_markdown, "markdown": to_markdown, "latex": to_latex, "csv": to_csv}
    if fmt not in renderers:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return renderers[fmt](build_table(rows, flops, paper_layout))
