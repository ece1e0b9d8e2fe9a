"""The ablation figure: a strategy beside each of its variants, one panel per budget.

Each bar is a configuration's accuracy with its 95% interval; the change against the default is
written beside the panel. The accuracy axis starts at 0 unless the bars' spread is smaller than their
distance from 0, where it starts a little below the lowest interval (and the caption says so), so
differences of a point or two stay readable. A variant whose achieved budget is more than
:data:`BUDGET_TOLERANCE` off the median of its panel is hatched: it did not run at the same budget,
so its bar does not compare at equal cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import median

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from prune_bench.report.captions import Context, accuracy_notes, caption, headline_rule
from prune_bench.report.data import reference_row, split_variant
from prune_bench.report.styles import REFERENCE_STYLE, strategy_styles
from prune_bench.runner.summary import SummaryRow

#: relative distance of a variant's achieved budget from its panel's median that gets it hatched
BUDGET_TOLERANCE = 0.05
DIFFERENT_BUDGET_HATCH = "///"


def achieved_budget(row: SummaryRow) -> float:
    """What ``row`` achieved of the quantity its unit budgets: tokens entering the LLM (``input``),
    tokens averaged over the layers (``layer-average``) or prefill FLOPs (``flops``), vs unpruned."""
    if row.unit == "input":
        return row.retention["input"]
    if row.unit == "flops" and "exact" in row.flops_ratio:
        return row.flops_ratio["exact"]
    return row.retention["layer_average"]


def off_budget(rows: Sequence[SummaryRow]) -> list[bool]:
    """For each row, whether its achieved budget is more than :data:`BUDGET_TOLERANCE` (relative)
    off the median of ``rows``."""
    achieved = [achieved_budget(r) for r in rows]
    mid = median(achieved) if achieved else 0.0
    return [mid > 0 and abs(a - mid) > BUDGET_TOLERANCE * mid for a in achieved]


def axis_start(low: float, high: float) -> float:
    """Where an accuracy axis over data from ``low`` to ``high`` starts: 0, unless the spread is
    smaller than the distance from 0; then a multiple of 5 a little below ``low``."""
    if low <= high - low:
        return 0.0
    pad = max(1.0, 0.1 * (high - low))
    return max(0.0, 5.0 * math.floor((low - pad) / 5.0 + 1e-9))


def ablation_figure(
    rows: Sequence[SummaryRow],
    strategy: str,
    labels: Mapping[str, str] | None = None,
    context: Context | None = None,
) -> Figure:
    """``strategy`` and each of its variants (``strategy[option=value]``), one panel per keep:
    horizontal bars of accuracy with their 95% intervals, the change vs the strategy written at each
    bar, beside the panel (``labels`` maps a variant's recorded name to its ablation label; ``context`` names the
    run in the title)."""
    labels = labels or {}
    variants = sorted(
        {r.strategy for r in rows if (v := split_variant(r.strategy)) is not None and v[0] == strategy},
        key=lambda s: (list(labels).index(s) if s in labels else len(labels), s),
    )
    base = {(r.keep, r.unit): r for r in rows if r.strategy == strategy}
    by_variant = {(r.strategy, r.keep, r.unit): r for r in rows if r.strategy in variants}
    # the budgets where some variant ran (the default alone at a budget compares nothing)
    budgets = sorted({(k, u) for (_, k, u) in by_variant if (k, u) in base}, key=lambda b: (b[1], -b[0]))
    with_unit = len({u for _, u in budgets}) > 1
    names = [strategy, *variants]
    panels = [[base[b], *(by_variant.get((v, *b)) for v in variants)] for b in budgets]
    shown = [r for panel in panels for r in panel if r is not None]
    ref = reference_row(rows)
    low, high = _data_range(shown, ref)
    start = axis_start(low, high)
    styles = strategy_styles(names)
    ticks = [_text(n, strategy, labels) for n in names]
    # the label column, each panel with its column of values, the legend: nothing squeezes the bars
    width = 0.3 + 0.08 * max(map(len, ticks)) + 3.9 * max(1, len(budgets)) + 2.0
    fig = Figure(figsize=(width, 1.9 + 0.36 * len(names)), layout="constrained")
    axes = fig.subplots(1, max(1, len(budgets)), sharey=True, squeeze=False)[0]
    any_off = False
    for ax, budget, panel in zip(axes, budgets, panels, strict=False):
        present = [r for r in panel if r is not None]
        off = dict(zip((id(r) for r in present), off_budget(present), strict=True))
        any_off |= any(off.values())
        for y, (name, row) in enumerate(zip(names, panel, strict=True)):
            if row is None:
                ax.text(
                    start + 0.02 * (high - start), y, "not run", va="center", fontsize="x-small", color="0.4"
                )
                continue
            _bar(ax, y, row, base[budget], styles[name], start, off[id(row)], default=y == 0)
        ax.axvline(base[budget].average, color=styles[strategy]["color"], linewidth=1.0)
        if ref is not None:
            ax.axvline(ref.average, **REFERENCE_STYLE)
        ax.set_xlim(start, high + 0.04 * (high - start))
        ax.set_title(f"keep {budget[0]:g}" + (f" ({budget[1]})" if with_unit else ""), fontsize="medium")
        ax.set_xlabel("accuracy (%)" + (f", axis from {start:g}" if start > 0 else ""))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), ticks)
    axes[0].invert_yaxis()
    colour = styles[strategy]["color"]
    handles: list[Artist] = [
        Line2D([], [], color=colour),
        Line2D([], [], color="0.2", marker="|", linestyle="-"),
    ]
    texts = [f"{strategy} (default)", "95% CI"]
    if ref is not None:
        handles.insert(0, Line2D([], [], **REFERENCE_STYLE))
        texts.insert(0, "none (unpruned)")
    if any_off:
        handles.append(Patch(facecolor="white", edgecolor="0.2", hatch=DIFFERENT_BUDGET_HATCH))
        texts.append("achieved budget differs")
    fig.legend(handles, texts, loc="outside right center", fontsize="small")
    notes = [f"Bars: {headline_rule(shown)} (%); in brackets the change vs the default, in points."]
    if start > 0:
        notes.append(f"The accuracy axis starts at {start:g}, not 0.")
    if any_off:
        notes.append(
            f"Hatched: achieved budget differs (more than {BUDGET_TOLERANCE:.0%} off the median of its "
            "panel; the achieved value is written beside it), so the bar does not compare at equal cost."
        )
    caption(fig, f"{strategy}: ablations at equal budget", shown, context, notes + accuracy_notes(shown))
    return fig


def _data_range(rows: Sequence[SummaryRow], ref: SummaryRow | None) -> tuple[float, float]:
    """Lowest interval low and highest interval high of ``rows`` (the reference's average included)."""
    lows = [r.average_ci[0] if r.average_ci else r.average for r in rows]
    highs = [r.average_ci[1] if r.average_ci else r.average for r in rows]
    if ref is not None:
        lows.append(ref.average)
        highs.append(ref.average)
    return (min(lows), max(highs)) if lows else (0.0, 100.0)


def _bar(
    ax: Axes,
    y: int,
    row: SummaryRow,
    default_row: SummaryRow,
    style: Mapping[str, str],
    start: float,
    off: bool,
    default: bool,
) -> None:
    """One configuration's bar from the axis start, its interval with the variant's marker at the value,
    and its value (and change vs the default) in a column beside the panel."""
    colour = style["color"]
    v = row.average
    ax.barh(
        [y], [v - start], left=start, height=0.7, edgecolor=colour, linewidth=1.0,
        color=colour if default else to_rgba(colour, 0.45), hatch=DIFFERENT_BUDGET_HATCH if off else None,
    )  # fmt: skip
    ci = row.average_ci or (v, v)  # the interval's ends can differ from v by rounding only
    ax.errorbar([v], [y], xerr=[[max(0.0, v - ci[0])], [max(0.0, ci[1] - v)]], color="0.15", marker=style["marker"],
                markerfacecolor=colour, markeredgecolor="0.15", markersize=6, capsize=2, linewidth=1.0,
                zorder=3)  # fmt: skip
    text = f"{v:.1f}" + ("" if default else f" ({v - default_row.average:+.1f})")
    if off:
        text += f", achieved {100 * achieved_budget(row):.0f}%"
    # a column beside the panel, where no bar or interval can run into it
    ax.text(1.03, y, text, transform=ax.get_yaxis_transform(), va="center", fontsize="x-small")


def _text(name: str, strategy: str, labels: Mapping[str, str]) -> str:
    if name == strategy:
        return f"{strategy} (default)"
    return labels.get(name) or split_variant(name)[1]  # type: ignore[index]


def ablated_strategies(rows: Sequence[SummaryRow]) -> list[str]:
    """Strategies that ran beside at least one of their variants."""
    plain = {r.strategy for r in rows}
    return sorted({v[0] for r in rows if (v := split_variant(r.strategy)) is not None and v[0] in plain})
