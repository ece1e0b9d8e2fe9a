"""Report figures, drawn with matplotlib's Agg renderer (no display, no pyplot state).

Figures are built as :class:`matplotlib.figure.Figure` objects directly, so nothing here selects a
backend or opens a window, and importing this module changes no global matplotlib setting.

:func:`write_figures` writes the set that both ``prune-bench plot`` and ``prune-bench report --plots``
draw: accuracy vs achieved retention, vs prefill FLOPs and vs TTFT, each with the Pareto front of
the pruned configurations; the visual tokens per LLM layer per strategy; one ablation figure
(:mod:`prune_bench.report.ablation_plot`) per strategy run beside its variants. Every strategy has one
colour and every variant one marker in all of them (:mod:`prune_bench.report.styles`); legends sit
outside the axes so they never cover data; every title names the run and its items and every caption
says what limits the reading (:mod:`prune_bench.report.captions`).

Every accuracy point carries a vertical bar for the 95% bootstrap interval of its average
(``SummaryRow.average_ci``), the unpruned reference a light band for its own interval.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from prune_bench.report.ablation_plot import ablated_strategies, ablation_figure
from prune_bench.report.captions import Context, accuracy_notes, caption, headline_rule
from prune_bench.report.data import (
    REFERENCE,
    mixed_units,
    reference_row,
    report_rows,
    split_variant,
    tokens_per_layer,
)
from prune_bench.report.styles import REFERENCE_STYLE, strategy_styles
from prune_bench.report.tables import flops_scale
from prune_bench.runner.summary import SummaryRow

ACCURACY_LABEL = "accuracy (%; bars: 95% CI)"


def save(fig: Figure, stem: str | Path, pdf: bool = False) -> list[Path]:
    """Write ``stem.png`` (and ``stem.pdf``, vector, when asked), creating the folder; returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png")] + ([stem.with_suffix(".pdf")] if pdf else [])
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths


def _legend(ax: Axes) -> None:
    """The legend beside the axes (upper right, outside), where it cannot cover a data point."""
    handles = ax.get_legend_handles_labels()[0]
    if not handles:  # an empty legend() warns
        return
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _figure(n_series: int = 0, width: float = 8.0, height: float = 4.8) -> Figure:
    """A figure wide enough for the axes plus a legend column beside them."""
    return Figure(figsize=(width + (1.5 if n_series > 12 else 0.0), height), layout="constrained")


def _series(rows: Sequence[SummaryRow]) -> dict[str, list[SummaryRow]]:
    """Pruned rows by strategy (and unit, when mixed), each sorted by keep."""
    with_unit = mixed_units(rows)
    out: dict[str, list[SummaryRow]] = defaultdict(list)
    for r in rows:
        if r.strategy != REFERENCE:
            out[f"{r.strategy} ({r.unit})" if with_unit else r.strategy].append(r)
    return {k: sorted(v, key=lambda r: r.keep) for k, v in sorted(out.items())}


def _styles(rows: Sequence[SummaryRow]) -> Callable[[str], dict[str, Any]]:
    """The style of a series of ``rows`` by its name (``strategy`` or ``strategy (unit)``)."""
    styles = strategy_styles(r.strategy for r in rows)
    return lambda series: styles[series.split(" (", 1)[0]]


def _unit_label(rows: Sequence[SummaryRow]) -> str | None:
    units = {r.unit for r in rows if r.strategy != REFERENCE}
    return units.pop() if len(units) == 1 else None


def _accuracy_caption(fig: Figure, title: str, rows: Sequence[SummaryRow], context: Context | None) -> None:
    band = " and the grey band around the unpruned level" if reference_row(rows) is not None else ""
    notes = [
        f"Accuracy: {headline_rule(rows)}. Bars{band}: 95% bootstrap intervals. "
        "Pareto front: the pruned configurations no other beats on both cost and accuracy."
    ]
    caption(fig, title, rows, context, notes + accuracy_notes(rows))


def _error_bars(ax: Axes, xs: Sequence[float], series: Sequence[SummaryRow], colour: str) -> None:
    """A vertical bar from each point's interval low to high (rows without an interval get none).

    Drawn as one line collection, so they never count among the axes' lines (markers, Pareto front)."""
    bars = [(x, r.average_ci) for x, r in zip(xs, series, strict=True) if r.average_ci is not None]
    if not bars:
        return
    ax.vlines(
        [x for x, _ in bars],
        [ci[0] for _, ci in bars],
        [ci[1] for _, ci in bars],
        colors=colour,
        linewidth=1.1,
        alpha=0.55,
        zorder=2,
    )


def _reference_band(ax: Axes, ref: SummaryRow) -> None:
    """The unpruned reference's interval as a light horizontal band behind the data."""
    if ref.average_ci is not None:
        low, high = ref.average_ci
        ax.axhspan(low, high, color=REFERENCE_STYLE["color"], alpha=0.1, linewidth=0, zorder=0)


def _reference_star(ax: Axes, x: float, y: float) -> None:
    ax.plot(
        [x],
        [y],
        marker="*",
        markersize=12,
        linestyle="none",
        color=REFERENCE_STYLE["color"],
        label=f"{REFERENCE} (unpruned)",
        zorder=4,
    )


_KEEP_LINES = ("-", "--", ":", "-.")
RETENTION_OF_UNIT = {"input": "input", "layer-average": "layer_average", "flops": "layer_average"}


def main_rows(rows: Sequence[SummaryRow]) -> list[SummaryRow]:
    """The rows of the headline figures: ablation variants whose strategy also ran are left to the
    ablation figures."""
    plain = {r.strategy for r in rows}
    return [r for r in rows if (v := split_variant(r.strategy)) is None or v[0] not in plain]


def accuracy_vs_retention(rows: Sequence[SummaryRow], context: Context | None = None) -> Figure:
    """Average accuracy against the retention each strategy achieved (in the unit it was budgeted in;
    a strategy that could not reach a budget sits where it actually was), the Pareto front of the
    pruned points marked (``context`` names the run in the title)."""
    groups = _series(rows)
    style_of = _styles(rows)
    unit = _unit_label(rows) or "layer-average"
    measure = RETENTION_OF_UNIT.get(unit, "layer_average")
    fig = _figure(len(groups))
    ax = fig.add_subplot()
    ref = reference_row(rows)
    if ref is not None:
        ax.axhline(ref.average, label=f"{REFERENCE} (unpruned)", **REFERENCE_STYLE)
        _reference_band(ax, ref)
    points: list[tuple[float, float]] = []
    for name, series in groups.items():
        series = sorted(series, key=lambda r: r.retention[measure])
        x = [100 * r.retention[measure] for r in series]
        style = style_of(name)
        ax.plot(x, [r.average for r in series], label=name, **style)
        _error_bars(ax, x, series, style["color"])
        points += zip(x, (r.average for r in series), strict=True)
    _draw_front(ax, pareto_front(points))
    what = "entering the LLM" if measure == "input" else "averaged over LLM layers"
    ax.set_xlabel(f"visual tokens kept, {what} (% of unpruned, achieved)")
    ax.xaxis.set_major_locator(MaxNLocator(steps=[1, 2, 5, 10]))
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_ylabel(ACCURACY_LABEL)
    ax.grid(alpha=0.3)
    _legend(ax)
    _accuracy_caption(fig, "Accuracy vs retention", rows, context)
    return fig


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and accuracy (higher), by cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def accuracy_vs_cost(
    rows: Sequence[SummaryRow], cost: str = "flops", flops: str = "exact", context: Context | None = None
) -> Figure:
    """Average accuracy against a per-item cost, ``flops`` (prefill FLOPs under convention ``flops``)
    or ``ttft`` (the recorded prefill time, median per item), the Pareto front of the pruned points
    marked (``context`` names the run in the title)."""
    if cost not in ("flops", "ttft"):
        raise ValueError(f"cost must be 'flops' or 'ttft', got {cost!r}")
    groups = _series(rows)
    style_of = _styles(rows)
    ref = reference_row(rows)
    if cost == "flops":
        scale, unit = flops_scale([r.flops[flops] for r in rows])

        def value(r: SummaryRow) -> float:
            return r.flops[flops] / scale

        xlabel = f"LLM prefill {unit} per item ({flops} convention)"
        title = "Accuracy vs prefill FLOPs"
    else:

        def value(r: SummaryRow) -> float:
            return r.prefill_ms

        xlabel = "time to first token: LLM prefill (ms, median per item)"
        title = "Accuracy vs TTFT"
    fig = _figure(len(groups))
    ax = fig.add_subplot()
    points: list[tuple[float, float]] = []
    if ref is not None:
        ax.axhline(ref.average, **REFERENCE_STYLE)
        _reference_band(ax, ref)
        _reference_star(ax, value(ref), ref.average)
        _error_bars(ax, [value(ref)], [ref], REFERENCE_STYLE["color"])
    for name, series in groups.items():
        series = sorted(series, key=value)
        xs, ys = [value(r) for r in series], [r.average for r in series]
        style = style_of(name)
        ax.plot(xs, ys, label=name, **style)
        _error_bars(ax, xs, series, style["color"])
        points += zip(xs, ys, strict=True)
    _draw_front(ax, pareto_front(points))
    if cost == "flops" and ref is not None and value(ref) > 0:
        _percent_axis(ax, value(ref), "% of unpruned prefill FLOPs")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ACCURACY_LABEL)
    ax.grid(alpha=0.3)
    _legend(ax)
    _accuracy_caption(fig, title, rows, context)
    return fig


def _draw_front(ax: Axes, front: list[tuple[float, float]]) -> None:
    if not front:
        return
    xs, ys = zip(*front, strict=True)
    ax.plot(
        xs,
        ys,
        drawstyle="steps-post",
        color="0.1",
        linewidth=6,
        alpha=0.22,
        solid_capstyle="round",
        label="Pareto front",
        zorder=1,
    )
    ax.plot(xs, ys, linestyle="none", marker="o", markersize=11, markerfacecolor="none",
            markeredgecolor="0.15", markeredgewidth=1.0, zorder=5)  # fmt: skip


def _percent_axis(ax: Axes, full: float, text: str) -> None:
    """A top axis reading the bottom one as a percentage of ``full``."""
    top = ax.secondary_xaxis("top", functions=(lambda x: 100 * x / full, lambda p: p * full / 100))
    top.set_xlabel(text)
    top.xaxis.set_major_formatter(PercentFormatter(decimals=0))


def tokens_per_layer_panels(
    records: Iterable[dict[str, Any]], rows: Sequence[SummaryRow], context: Context | None = None
) -> Figure:
    """One panel per strategy: the mean visual tokens each LLM layer saw, one line per keep, the
    unpruned count dashed. Staircases (HieraVid, PyramidDrop) and single steps (FastV) read at a glance
    (``context`` names the run in the title)."""
    curves = tokens_per_layer(records)
    shown = {r.strategy for r in main_rows(rows)} - {REFERENCE}
    by_strategy: dict[str, dict[tuple[float, str], list[float]]] = defaultdict(dict)
    for (strategy, keep, unit), curve in curves.items():
        if strategy in shown:
            by_strategy[strategy][(keep, unit)] = curve
    reference = next((c for (s, _, _), c in curves.items() if s == REFERENCE), None)
    names = sorted(by_strategy)
    styles = strategy_styles(names)
    budgets = sorted({b for c in by_strategy.values() for b in c}, key=lambda b: (b[1], -b[0]))
    with_unit = len({u for _, u in budgets}) > 1
    dashes = {b: _KEEP_LINES[i % len(_KEEP_LINES)] for i, b in enumerate(budgets)}
    ncols = max(1, min(4, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = Figure(figsize=(2.9 * ncols + 0.6, 2.3 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    for idx, ax in enumerate(axes.flat):
        if idx >= len(names):
            ax.set_visible(False)
            continue
        name = names[idx]
        style = styles[name]
        if reference is not None:
            ax.plot(range(len(reference)), reference, **REFERENCE_STYLE)
        for budget, curve in sorted(by_strategy[name].items(), key=lambda kv: budgets.index(kv[0])):
            ax.plot(
                range(len(curve)),
                curve,
                color=style["color"],
                marker=style["marker"],
                markersize=3.5,
                linestyle=dashes[budget],
                drawstyle="steps-mid",
            )
        ax.set_title(name, color=style["color"], fontsize="medium")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if idx % ncols == 0:
            ax.set_ylabel("visual tokens")
        if idx >= len(names) - ncols:
            ax.set_xlabel("LLM layer")
            ax.tick_params(labelbottom=True)
    handles = [Line2D([], [], **REFERENCE_STYLE)] if reference is not None else []
    labels = [f"{REFERENCE} (unpruned)"] if reference is not None else []
    for budget in budgets:
        handles.append(Line2D([], [], color="0.2", linestyle=dashes[budget]))
        labels.append(f"keep {budget[0]:g}" + (f" ({budget[1]})" if with_unit else ""))
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 6), fontsize="small")
    caption(fig, "Visual tokens each LLM layer processed (mean over items)", main_rows(rows), context)
    return fig


def write_figures(
    records: Iterable[dict[str, Any]],
    out_dir: str | Path,
    flops: str = "exact",
    labels: Mapping[str, str] | None = None,
    pdf: bool = True,
    on_write: Callable[[Path], None] | None = None,
    context: Context | None = None,
) -> list[Path]:
    """Every figure of ``prune-bench plot`` and ``report --plots`` into ``out_dir`` (PNG, and vector
    PDF unless ``pdf`` is off): accuracy vs retention, vs prefill FLOPs and vs TTFT (Pareto fronts
    marked), visual tokens per layer per strategy, and one ablation figure per strategy run with
    variants (``labels`` maps a variant's recorded name to its ablation label; ``context``, the run's
    model, benchmark and frames, goes into every title)."""
    records = list(records)
    rows = report_rows(records)
    headline = main_rows(rows)
    figures: list[tuple[str, Callable[[], Figure]]] = [
        ("accuracy_vs_retention", lambda: accuracy_vs_retention(headline, context)),
        (f"accuracy_vs_flops_{flops}", lambda: accuracy_vs_cost(headline, "flops", flops, context)),
        ("accuracy_vs_ttft", lambda: accuracy_vs_cost(headline, "ttft", context=context)),
        ("tokens_per_layer", lambda: tokens_per_layer_panels(records, rows, context)),
    ]
    for name in ablated_strategies(rows):
        figures.append(
            (f"ablation_{name}", lambda name=name: ablation_figure(rows, name, labels, context))  # type: ignore[misc]
        )
    paths: list[Path] = []
    for stem, draw in figures:
        for path in save(draw(), Path(out_dir) / stem, pdf):
            paths.append(path)
            if on_write is not None:
                on_write(path)
    return paths
