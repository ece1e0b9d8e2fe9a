"""Accuracy-per-task tables in markdown, LaTeX (booktabs) and CSV.

One row per (strategy, keep): accuracy on each task, the benchmark's headline number (``avg``: its
:class:`~prune_bench.benchmarks.headline.HeadlineRule`, named in the note), visual-token retention (into the
LLM / averaged over its layers / visible while decoding), prefill FLOPs relative to the unpruned model
under one named convention, and the change of the average vs the ``none`` reference row (in points).
The best pruned value of each scored column within one budget is bold (markdown, LaTeX); for an
accuracy only where it is significantly better than every other row of that budget (exact McNemar
p < :data:`SIGNIFICANCE` on the items both ran), so a bold number is never inside the noise. LaTeX is a
booktabs ``table`` float, the note as its caption, resized to the text width, with the compact column
set by default (:data:`COLUMN_SETS`).

Uncertainty (:mod:`prune_bench.report.stats`, computed by ``summarize``): a ``95% CI`` column beside
the average (percentile bootstrap, items resampled within each task) and a ``p vs none`` column (exact
McNemar test against the unpruned row on the items both ran, ``<0.001``, ``0.03``, ...). CSV has them
raw, with more: ``average_ci_low``/``_high``, ``p_vs_none``, and per task ``n_<task>`` and
``acc_<task>_ci_low``/``_high``, then ``n_vs_none`` (shared items), ``delta_vs_none_paired`` (the
difference on them) and its ``delta_vs_none_ci_low``/``_high``. When some row has fewer than
:data:`~prune_bench.report.stats.SMALL_N` items the note says its intervals are wide.
:func:`render_versus` compares two named strategies the same way, budget by budget.

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

from prune_bench.benchmarks.headline import MEAN_OF_TASKS, HeadlineRule
from prune_bench.core.flops import CONVENTIONS
from prune_bench.errors import UserError
from prune_bench.report import stats
from prune_bench.report.data import REFERENCE, mixed_units, reference_row
from prune_bench.runner.summary import SummaryRow

FORMATS: tuple[str, ...] = ("md", "markdown", "latex", "csv")
#: the significance level behind bold accuracies (:func:`best_cells`)
SIGNIFICANCE = 0.05
#: "all": every column; "compact": what a page fits (no input/decode retention or absolute FLOPs, the
#: headline's percentage only, the task columns only for up to :data:`COMPACT_TASKS` tasks)
COLUMN_SETS: tuple[str, ...] = ("all", "compact")
COMPACT_TASKS = 6
#: what each FLOPs convention of :data:`prune_bench.core.flops.CONVENTIONS` counts, for the table note
FLOPS_NOTE = {
    "exact": "exact: LLM prefill, GQA-aware, causal attention",
    "paper": "paper: 4nd^2 + 2n^2d + 2ndm per LLM layer",
}

#: None: not applicable (a task the row was not run on, no reference); a pair: an interval (low, high)
Cell = str | float | tuple[float, float] | None


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
    count: bool = False  # a whole number (items)
    interval: bool = False  # cells are (low, high): ``[low, high]`` in text, ``<csv>_low``/``_high`` in CSV
    pvalue: bool = False  # shown as papers print p (``<0.001``, ``0.03``), raw in CSV
    csv_only: bool = False  # a raw column of the CSV, not printed in markdown or LaTeX
    wide: bool = False  # left out of the compact column set (LaTeX's default)
    #: an accuracy column: the task whose items it is over ("": all items); bold only where significant
    task: str | None = None


@dataclass
class Table:
    """Format-neutral table: cells hold raw numbers; the renderers format them."""

    columns: list[Column]
    rows: list[list[Cell]]
    groups: list[tuple[float, str] | None] = field(default_factory=list)  # None for the reference row
    flops: str = "exact"
    reference: list[Cell] | None = None  # the reference row's cells, for percentages of it
    paper_layout: bool = False
    note: str | None = None  # replaces the accuracy table's note (another kind of table)
    rule: HeadlineRule = MEAN_OF_TASKS  # the benchmark's headline rule behind ``avg``
    outcomes: list[stats.Outcomes | None] = field(default_factory=list)  # per row, for significance
    #: a best accuracy is bold only where it is significantly better than every other row of its
    #: budget (exact McNemar p < alpha); None: the best is bold whatever the difference
    alpha: float | None = None
    compact: bool = False  # print the compact column set (``wide`` columns left out)

    def shown(self) -> list[int]:
        """Indices of the columns markdown and LaTeX print (CSV has every column)."""
        return [j for j, c in enumerate(self.columns) if not c.csv_only and not (self.compact and c.wide)]


def flops_scale(values: Sequence[float]) -> tuple[float, str]:
    """(divisor, unit) that shows FLOPs counts with a leading digit: TFLOPs for real models, GFLOPs or
    MFLOPs for the shipped small one."""
    top = max(values, default=0.0)
    for scale, unit in ((1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs")):
        if top >= scale:
            return scale, unit
    return 1.0, "FLOPs"


def build_table(
    rows: Sequence[SummaryRow],
    flops: str = "exact",
    paper_layout: bool = False,
    alpha: float | None = SIGNIFICANCE,
    columns_set: str = "all",
) -> Table:
    """Lay out ``summarize`` rows: reference first, then blocks of one budget (keep, unit).

    ``flops`` names the FLOPs convention shown (``exact`` or ``paper``); ``paper_layout`` adds the
    percentages of the reference and the absolute prefill FLOPs (see the module docstring); ``alpha``
    the significance level a best accuracy must reach to be bold (None: bold the best regardless);
    ``columns_set`` ``"compact"`` prints the columns a page fits (see :data:`COLUMN_SETS`).
    """
    if columns_set not in COLUMN_SETS:
        raise ValueError(f"column set must be one of {COLUMN_SETS}, got {columns_set!r}")
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
    columns.append(Column("n", "n", count=True))  # items behind the row: every cell is a mean over these
    rel = paper_layout and ref is not None
    many = len(tasks) > COMPACT_TASKS  # MVBench's 20: the compact set shows the headline only
    columns += [Column(t, f"acc_{t}", better="high", relative=rel, wide=many, task=t) for t in tasks]
    columns += [
        Column("avg", "average", better="high", relative=rel, task=""),
        Column(f"{stats.CONFIDENCE:.0%} CI", "average_ci", interval=True),
        Column("ret. input", "retention_input", digits=3, wide=True),
        Column("ret. layer-avg", "retention_layer_average", digits=3),
        Column("ret. decode", "retention_decode", digits=3, wide=True),
    ]
    scale, unit = flops_scale([r.flops[flops] for r in rows])
    if paper_layout:
        columns.append(
            Column(
                f"prefill {unit}", f"prefill_{unit.lower()}_{flops}", digits=3, significant=True, wide=True
            )
        )
    columns += [
        Column(f"rel. FLOPs ({flops})", f"flops_{flops}", digits=3, better="low"),
        Column(f"Δ avg vs {REFERENCE}", f"delta_vs_{REFERENCE}", better="high", signed=True, task=""),
        Column(f"p vs {REFERENCE}", f"p_vs_{REFERENCE}", pvalue=True),
    ]
    for t in tasks:  # the raw uncertainty of every cell, CSV only
        columns += [
            Column(f"n {t}", f"n_{t}", count=True, csv_only=True),
            Column(f"{t} CI", f"acc_{t}_ci", interval=True, csv_only=True),
        ]
    columns += [
        Column(f"n vs {REFERENCE}", f"n_vs_{REFERENCE}", count=True, csv_only=True),
        Column(f"Δ paired vs {REFERENCE}", f"delta_vs_{REFERENCE}_paired", signed=True, csv_only=True),
        Column(f"Δ CI vs {REFERENCE}", f"delta_vs_{REFERENCE}_ci", interval=True, csv_only=True),
    ]
    cells: list[list[Cell]] = []
    groups: list[tuple[float, str] | None] = []
    for r in rows:
        line: list[Cell] = [r.strategy, r.keep]
        if with_unit:
            line.append(r.unit)
        line.append(r.items)
        line += [r.accuracy.get(t) for t in tasks]
        vs = r.vs_none if r is not ref else None
        line += [
            r.average,
            r.average_ci,
            r.retention["input"],
            r.retention["layer_average"],
            r.retention["decode"],
            *([r.flops[flops] / scale] if paper_layout else []),
            r.flops_ratio[flops],
            None if ref is None else r.average - ref.average,
            None if vs is None else vs.p,
        ]
        for t in tasks:
            line += [r.task_items.get(t), r.accuracy_ci.get(t)]
        line += [None, None, None] if vs is None else [vs.n, vs.delta, vs.ci]
        cells.append(line)
        groups.append(None if r.strategy == REFERENCE else (r.keep, r.unit))
    reference = cells[rows.index(ref)] if ref is not None else None
    return Table(
        columns,
        cells,
        groups,
        flops,
        reference,
        paper_layout,
        rule=rows[0].rule if rows else MEAN_OF_TASKS,
        outcomes=[r.outcomes for r in rows],
        alpha=alpha,
        compact=columns_set == "compact",
    )


def _fmt(value: Cell, col: Column) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        low, high = (_fmt(v, col) for v in value)
        return f"[{low}, {high}]"
    if col.pvalue:
        return stats.format_p(value)
    if col.csv == "keep" or col.count:
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
    if table.compact and table.columns[j].task != "":  # compact: the headline's percentage only
        return None
    if not isinstance(value, float | int) or not isinstance(ref, float | int) or not ref:
        return None
    return 100.0 * value / ref


def best_cells(table: Table, significant: bool = True) -> set[tuple[int, int]]:
    """(row, column) of the best value of each scored column, among pruned rows of the same budget.

    The reference row is never bolded (it is the ceiling, not a competitor); rows are compared within
    one (keep, unit), as papers compare methods at one retention; ties, at the precision shown, all win.
    With ``table.alpha`` set (and ``significant``), an accuracy column's best is kept only when it is
    one row and the exact McNemar test against every other row of its budget (on the items both ran,
    of the column's task) gives p < alpha: a best inside the noise is not marked.
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
            winners = [i for v, i in entries if v == target]
            if significant and table.alpha is not None and col.task is not None and table.outcomes:
                others = [i for _, i in entries if i not in winners]
                if (
                    len(winners) > 1
                    or not others
                    or not all(_significant(table, winners[0], k, col.task) for k in others)
                ):
                    continue
            best.update((i, j) for i in winners)
    return best


def _significant(table: Table, i: int, k: int, task: str) -> bool:
    """Whether rows i and k differ at ``table.alpha`` on the items both ran (of ``task``; "": all)."""
    a, b = table.outcomes[i], table.outcomes[k]
    if not a or not b or table.alpha is None:
        return False
    p = stats.mcnemar_shared(a, b, task or None)
    return p is not None and p < table.alpha


def _bold_note(table: Table) -> str:
    if table.alpha is None:
        return "best per budget in bold"
    return (
        f"bold: best per budget, for accuracies only where significantly better than every other method "
        f"of that budget (exact McNemar p < {table.alpha:g} on the items both ran)"
    )


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured markdown table, best per budget in bold, with a note on the units below it."""
    best = best_cells(table)
    shown = table.shown()
    head = [table.columns[j].header for j in shown]
    align = [":---" if table.columns[j].csv in _TEXT_COLUMNS else "---:" for j in shown]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    for i, row in enumerate(table.rows):
        cells = []
        for j in shown:
            text = _display(row, j, i, table)
            text = f"**{text}**" if (i, j) in best else text
            pct = percent_of_reference(table, i, j)
            cells.append(text if pct is None else f"{text} ({pct:.1f}%)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _note(table) + "\n"


_TEXT_COLUMNS = ("strategy", "unit")  # left-aligned


def _display(row: list[Cell], j: int, i: int, table: Table) -> str:
    col = table.columns[j]
    if col.signed and table.groups[i] is None:
        return "—"  # the reference row's change vs itself
    return _fmt(row[j], col)


def _counts(table: Table) -> list[int]:
    j = next((j for j, c in enumerate(table.columns) if c.csv == "n"), None)
    return [] if j is None else [int(v) for row in table.rows if isinstance(v := row[j], int | float)]


def _stats_note(table: Table) -> str:
    """What the intervals and p-values are, and the warning for small rows."""
    within = "" if table.rule.over == "items" else ", within each task"
    text = (
        f" {stats.CONFIDENCE:.0%} CI: percentile bootstrap of avg ({stats.RESAMPLES:,} resamples of the items"
        f"{within}); p vs {REFERENCE}: exact McNemar test against {REFERENCE} on the items both ran."
    )
    small = [n for n in _counts(table) if n < stats.SMALL_N]
    if small:
        text += (
            f" Rows with n < {stats.SMALL_N} (here as few as {min(small)}) have wide intervals: "
            "differences within them are noise, not a ranking."
        )
    return text


def _note(table: Table) -> str:
    if table.note is not None:
        return table.note
    extra = ""
    if table.paper_layout:
        extra = (
            f" In brackets: % of the unpruned model ({REFERENCE}); prefill FLOPs are per item."
            if table.reference is not None
            else " Prefill FLOPs are per item."
        )
    return (
        f"Accuracy in %, avg = {table.rule.text}; ret. = fraction of visual tokens kept (input to the LLM, "
        f"averaged over its layers, visible while decoding); rel. FLOPs = prefill FLOPs / unpruned "
        f"({FLOPS_NOTE[table.flops]}); Δ in accuracy points vs {REFERENCE}; {_bold_note(table)}."
        + extra
        + _stats_note(table)
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
    if text.startswith("<"):  # ``<0.001``: a bare < is another glyph in LaTeX's text fonts
        return "$<$" + text[1:]
    return latex_escape(text)


def _latex_display(row: list[Cell], j: int, i: int, table: Table) -> str:
    value, col = row[j], table.columns[j]
    if isinstance(value, tuple) and not (col.signed and table.groups[i] is None):
        low, high = (_latex_cell(_fmt(v, col)) for v in value)
        return f"[{low}, {high}]"
    return _latex_cell(_display(row, j, i, table))


def to_latex(table: Table) -> str:
    """A booktabs table float that fits the text width: the note as its caption, the ``tabular``
    inside a ``resizebox`` (packages: booktabs, graphicx); reference row first, a rule between
    budgets, bold as :func:`best_cells` decides."""
    best = best_cells(table)
    shown = table.shown()
    spec = "".join("l" if table.columns[j].csv in _TEXT_COLUMNS else "r" for j in shown)
    heads = [
        latex_escape(table.columns[j].header).replace("Δ", r"$\Delta$").replace("−", "$-$") for j in shown
    ]
    note = latex_escape(_note(table)).replace("Δ", r"$\Delta$").replace("−", "$-$")
    out = [
        r"% needs \usepackage{booktabs,graphicx}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{note}}}",
        r"\label{tab:prune-bench}",
        r"\resizebox{\linewidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(heads) + r" \\",
        r"\midrule",
    ]
    for i, row in enumerate(table.rows):
        if i > 0 and table.groups[i] != table.groups[i - 1]:
            out.append(r"\midrule")
        cells = []
        for j in shown:
            text = _latex_display(row, j, i, table)
            text = rf"\textbf{{{text}}}" if (i, j) in best else text
            pct = percent_of_reference(table, i, j)
            cells.append(text if pct is None else rf"{text} {{\scriptsize({pct:.1f}\%)}}")
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    """CSV with machine-friendly headers and raw numbers (4 decimals); empty where not applicable.

    In the paper layout each relative column gets a ``<column>_pct_full`` twin, a ``best`` column lists
    the columns where the row is best within its budget (``;``-separated) and ``best_significant``
    those among them where it is significantly better than every other row of the budget (what
    markdown and LaTeX print bold).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    best, significant = best_cells(table, significant=False), best_cells(table)
    header: list[str] = []
    for c in table.columns:
        if c.interval:
            header += [f"{c.csv}_low", f"{c.csv}_high"]
        else:
            header += [c.csv, f"{c.csv}_pct_full"] if c.relative else [c.csv]
    writer.writerow(header + (["best", "best_significant"] if table.paper_layout else []))
    for i, row in enumerate(table.rows):
        line: list[str] = []
        for j, (v, c) in enumerate(zip(row, table.columns, strict=True)):
            if c.interval:
                line += [_csv_cell(x, c) for x in v] if isinstance(v, tuple) else ["", ""]
                continue
            line.append(_csv_cell(v, c))
            if c.relative:
                pct = percent_of_reference(table, i, j)
                line.append("" if pct is None else f"{pct:.2f}")
        if table.paper_layout:
            for marked in (best, significant):
                line.append(";".join(c.csv for j, c in enumerate(table.columns) if (i, j) in marked))
        writer.writerow(line)
    return buf.getvalue()


def _csv_cell(value: Cell, col: Column) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        raise TypeError(f"column {col.csv}: an interval outside an interval column")
    if col.csv == "keep" or col.count or col.significant or col.pvalue:
        return f"{value:.6g}"
    return f"{value:.4f}"


def render(
    rows: Sequence[SummaryRow],
    fmt: str = "md",
    flops: str = "exact",
    paper_layout: bool = False,
    columns_set: str | None = None,
    alpha: float | None = SIGNIFICANCE,
) -> str:
    """``summarize`` rows as a table in ``fmt`` (markdown/md, latex or csv), FLOPs under convention
    ``flops``; ``paper_layout`` as in the module docstring; ``columns_set`` "all" or "compact" (by
    default compact for LaTeX, which must fit a page, all for the others; CSV always has every
    column); ``alpha`` as in :func:`build_table`."""
    renderers = {"md": to_markdown, "markdown": to_markdown, "latex": to_latex, "csv": to_csv}
    if fmt not in renderers:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    chosen = columns_set or ("compact" if fmt == "latex" else "all")
    return renderers[fmt](build_table(rows, flops, paper_layout, alpha, chosen))


def versus_table(rows: Sequence[SummaryRow], a: str, b: str) -> Table:
    """Strategy ``a`` against strategy ``b``, paired, at every budget both ran (one of them ``none``:
    against each budget of the other): on the items both ran, each one's average over tasks, the
    difference ``a - b`` with its paired-bootstrap interval and the exact McNemar p-value.

    A name is a row's strategy as the table prints it (``fastv[k=6]``); a :class:`UserError` names
    the strategies there are when one is not among them, or when the two share no budget."""
    names = sorted({r.strategy for r in rows})
    for name in (a, b):
        if name not in names:
            raise UserError(f"--versus: no row '{name}' in the results (there are: {', '.join(names)})")
    if a == b:
        raise UserError(f"--versus: name two different strategies, not '{a}' twice")
    of_a = [r for r in rows if r.strategy == a]
    of_b = {(r.keep, r.unit): r for r in rows if r.strategy == b}
    if b == REFERENCE:
        pairs = [(r, of_b[next(iter(of_b))]) for r in of_a]
    elif a == REFERENCE:
        pairs = [(of_a[0], r) for r in of_b.values()]
    else:
        pairs = [(r, of_b[(r.keep, r.unit)]) for r in of_a if (r.keep, r.unit) in of_b]
    if not pairs:
        budgets = {
            n: ", ".join(sorted({f"{r.keep:g} ({r.unit})" for r in rows if r.strategy == n})) for n in (a, b)
        }
        raise UserError(
            f"--versus: '{a}' and '{b}' share no budget ('{a}' ran at {budgets[a]}, '{b}' at {budgets[b]})"
        )
    budget_of = (lambda p: p[1]) if a == REFERENCE else (lambda p: p[0])
    pairs.sort(key=lambda p: (budget_of(p).unit, -budget_of(p).keep))
    with_unit = len({budget_of(p).unit for p in pairs}) > 1
    columns = [Column("keep", "keep")] + ([Column("unit", "unit")] if with_unit else [])
    columns += [
        Column("n", "n", count=True),
        Column(a, "average_a"),
        Column(b, "average_b"),
        Column(f"Δ {a} − {b}", "delta", signed=True),
        Column(f"{stats.CONFIDENCE:.0%} CI", "delta_ci", signed=True, interval=True),
        Column("p", "p", pvalue=True),
        Column(f"only {a} right", "only_a", count=True, csv_only=True),
        Column(f"only {b} right", "only_b", count=True, csv_only=True),
    ]
    cells: list[list[Cell]] = []
    groups: list[tuple[float, str] | None] = []
    for ra, rb in pairs:
        budget = budget_of((ra, rb))
        test = stats.paired(ra.outcomes, rb.outcomes, rule=ra.rule)
        line: list[Cell] = [budget.keep] + ([budget.unit] if with_unit else [])
        if test is None:
            line += [0, None, None, None, None, None, None, None]
        else:
            line += [test.n, test.accuracy_a, test.accuracy_b, test.delta, test.ci, test.p]
            line += [test.only_a, test.only_b]
        cells.append(line)
        groups.append((budget.keep, budget.unit))
    note = (
        f"{a} vs {b} on the items both ran (n), at each budget: {pairs[0][0].rule.text} in %; "
        f"Δ = {a} − {b} in points with its {stats.CONFIDENCE:.0%} CI (paired bootstrap: {stats.RESAMPLES:,} "
        f"resamples of the shared items{'' if pairs[0][0].rule.over == 'items' else ', within each task'}); "
        "p: exact McNemar test (two-sided binomial "
        "on the items exactly one of them got right)."
    )
    n_at = 2 if with_unit else 1
    counts: list[int] = []
    for line in cells:
        if isinstance(n := line[n_at], int):
            counts.append(n)
    if counts and min(counts) < stats.SMALL_N:
        note += (
            f" With n < {stats.SMALL_N} (here as few as {min(counts)}) the intervals are wide: differences "
            "within them are noise."
        )
    return Table(columns, cells, groups, note=note)


def render_versus(rows: Sequence[SummaryRow], a: str, b: str, fmt: str = "md") -> str:
    """:func:`versus_table` in ``fmt`` (markdown/md, latex or csv)."""
    renderers = {"md": to_markdown, "markdown": to_markdown, "latex": to_latex, "csv": to_csv}
    if fmt not in renderers:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return renderers[fmt](versus_table(rows, a, b))
