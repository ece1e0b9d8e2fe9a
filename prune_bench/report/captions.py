"""The title and caption of a figure: what it shows, on which run, and how far to trust it.

Every figure's title names the model, benchmark and frames of the run (from the results directory's
manifest, :func:`~prune_bench.report.data.run_context`; left out for a hand-made store) and the items
behind each point (``n=300``, or ``n=150-300`` when rows differ). Its caption, below the axes, carries
the notes a reader needs to read the figure right: that the intervals are wide under
:data:`~prune_bench.report.stats.SMALL_N` items, that an axis does not start at 0, that a bar ran at
another budget. Both are wrapped to the figure's width, so a constrained layout never clips them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from prune_bench.report.stats import SMALL_N
from prune_bench.runner.summary import SummaryRow

#: Run context of a figure: ``model``, ``benchmark``, ``frames`` (any may be missing or None).
Context = Mapping[str, Any]

SMALL_N_NOTE = f"n < {SMALL_N}: intervals are wide; differences within them are noise."
#: average glyph width of the default font, in font sizes (DejaVu Sans runs about 0.55)
_GLYPH = 0.6


def short_model(model: str) -> str:
    """A checkpoint path or hub id shortened to its last component (``org/Qwen2-VL-7B`` -> ``Qwen2-VL-7B``)."""
    return model.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or model


def items_text(rows: Sequence[SummaryRow]) -> str | None:
    """``n=300``, or ``n=150-300`` when the rows ran different numbers of items; None without rows."""
    counts = [r.items for r in rows]
    if not counts:
        return None
    low, high = min(counts), max(counts)
    return f"n={low}" if low == high else f"n={low}-{high}"


def run_line(rows: Sequence[SummaryRow], context: Context | None = None) -> str:
    """``Qwen2-VL-7B, videomme, 16 frames, n=300``: the parts the context and rows know."""
    context = context or {}
    parts = []
    if context.get("model"):
        parts.append(short_model(str(context["model"])))
    if context.get("benchmark"):
        parts.append(str(context["benchmark"]))
    if context.get("frames"):
        parts.append(f"{context['frames']} frames")
    if (n := items_text(rows)) is not None:
        parts.append(n)
    return ", ".join(parts)


def small_n(rows: Sequence[SummaryRow]) -> bool:
    """Whether some row ran fewer than :data:`SMALL_N` items (a ``--limit`` run, a small benchmark)."""
    return any(r.items < SMALL_N for r in rows)


def accuracy_notes(rows: Sequence[SummaryRow]) -> list[str]:
    """The caption notes every accuracy figure of ``rows`` carries."""
    return [SMALL_N_NOTE] if small_n(rows) else []


def headline_rule(rows: Sequence[SummaryRow]) -> str:
    """How the rows' headline number is computed (``mean of task accuracies``, say)."""
    rules = {r.headline_rule for r in rows}
    return rules.pop() if len(rules) == 1 else "headline accuracy"


def caption(
    fig: Figure,
    title: str,
    rows: Sequence[SummaryRow],
    context: Context | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Set ``fig``'s title (``title`` over the run line) and its caption (``notes``, one per line)."""
    width = fig.get_figwidth() * 72  # points
    line = run_line(rows, context)
    head = [title, *_wrap(line, width, 12)] if line else [title]
    fig.suptitle("\n".join(head), fontsize=12)
    if notes:
        text = "\n".join(w for note in notes for w in _wrap(note, width, 9))
        fig.supxlabel(text, fontsize=9, x=0.01, ha="left", color="0.25")


def _wrap(text: str, width_pt: float, size_pt: float) -> list[str]:
    return textwrap.wrap(text, max(20, int(0.95 * width_pt / (_GLYPH * size_pt)))) or [text]
