"""Report figures, drawn with matplotlib's Agg renderer (no display, no pyplot state).

Figures are built as :class:`matplotlib.figure.Figure` objects directly, so nothing here selects a
backend or opens a window, and importing this module changes no global matplotlib setting.

Every strategy has one colour and marker in every figure (:func:`strategy_style`: fixed for the
built-ins, derived from the name for plugins), and legends sit outside the axes so they never cover
data. :func:`write_figures` writes the full set (``prune-bench plot``); :func:`write_plots` the
three figures of ``prune-bench report --plots``.

Every accuracy-vs-something point carries a vertical bar for the 95% bootstrap interval of its
average (``SummaryRow.average_ci``), the unpruned reference a light band for its own interval.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from prune_bench.report.data import (
    REFERENCE,
    label,
    mixed_units,
    reference_row,
    report_rows,
    split_variant,
    tokens_per_layer,
)
from prune_bench.report.tables import flops_scale
from prune_bench.runner.summary import SummaryRow

REFERENCE_STYLE: dict[str, Any] = {"color": "0.4", "linestyle": "--", "linewidth": 1.2}

#: Colour and marker of each built-in strategy, the same in every figure; the headline method red.
STRATEGY_STYLES: dict[str, tuple[str, str]] = {
    "hieravid": ("#d62728", "o"),
    "fastv": ("#1f77b4", "s"),
    "visionzip": ("#2ca02c", "^"),
    "dycoke": ("#ff7f0e", "D"),
    "pdrop": ("#9467bd", "v"),
    "divprune": ("#8c564b", "P"),
    "framefusion": ("#e377c2", "X"),
    "fastvid": ("#17becf", "<"),
    "vispruner": ("#bcbd22", ">"),
    "prunevid": ("#393b79", "h"),
    "holitom": ("#637939", "p"),
    "random": ("#7b4173", "d"),
    "uniform": ("#8c6d31", "*"),
}
#: For strategies this table does not know (plugins, combinations): picked by a hash of the name, so a
#: name keeps its colour from one report to the next.
_EXTRA_COLOURS = (
    "#5254a3",
    "#8ca252",
    "#bd9e39",
    "#ad494a",
    "#9c9ede",
    "#6b6ecf",
    "#e7ba52",
    "#d6616b",
    "#ce6dbd",
    "#3182bd",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*")


def strategy_style(name: str) -> dict[str, Any]:
    """Colour, marker and line style of strategy ``name`` (``none`` gets the reference style)."""
    if name == REFERENCE:
        return dict(REFERENCE_STYLE)
    if name in STRATEGY_STYLES:
        colour, marker = STRATEGY_STYLES[name]
        return {"color": colour, "marker": marker, "linestyle": "-"}
    h = zlib.crc32(name.encode())
    return {
        "color": _EXTRA_COLOURS[h % len(_EXTRA_COLOURS)],
        "marker": _MARKERS[(h // len(_EXTRA_COLOURS)) % len(_MARKERS)],
        "linestyle": "--",  # dashed: not one of the built-ins
    }


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


def _figure(n_series: int = 0, width: float = 8.0, height: float = 4.4) -> Figure:
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


def _style_of(series_name: str) -> dict[str, Any]:
    return strategy_style(series_name.split(" (", 1)[0])


def _unit_label(rows: Sequence[SummaryRow]) -> str | None:
    units = {r.unit for r in rows if r.strategy != REFERENCE}
    return units.pop() if len(units) == 1 else None


ACCURACY_LABEL = "average accuracy (%; bars: 95% CI)"


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


# --------------------------------------------------------------------------- the report --plots set
def accuracy_vs_keep(rows: Sequence[SummaryRow]) -> Figure:
    """Average accuracy against the requested keep, one line per strategy; ``none`` dashed."""
    groups = _series(rows)
    fig = _figure(len(groups))
    ax = fig.add_subplot()
    ref = reference_row(rows)
    if ref is not None:
        ax.axhline(ref.average, label=f"{REFERENCE} (unpruned)", **REFERENCE_STYLE)
        _reference_band(ax, ref)
    for name, series in groups.items():
        style = _style_of(name)
        ax.plot([r.keep for r in series], [r.average for r in series], label=name, **style)
        _error_bars(ax, [r.keep for r in series], series, style["color"])
    unit = _unit_label(rows)
    ax.set_xlabel(f"keep, requested ({unit})" if unit else "keep, requested")
    ax.set_ylabel(ACCURACY_LABEL)
    ax.set_title("Accuracy vs keep")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def accuracy_vs_flops(rows: Sequence[SummaryRow], flops: str = "exact") -> Figure:
    """Average accuracy against prefill FLOPs relative to the unpruned model (convention ``flops``)."""
    groups = _series(rows)
    fig = _figure(len(groups))
    ax = fig.add_subplot()
    ref = reference_row(rows)
    if ref is not None:
        ax.axhline(ref.average, **REFERENCE_STYLE)
        _reference_band(ax, ref)
        _reference_star(ax, ref.flops_ratio[flops], ref.average)
        _error_bars(ax, [ref.flops_ratio[flops]], [ref], REFERENCE_STYLE["color"])
    for name, series in groups.items():
        series = sorted(series, key=lambda r: r.flops_ratio[flops])
        style = _style_of(name)
        xs = [r.flops_ratio[flops] for r in series]
        ax.plot(xs, [r.average for r in series], label=name, **style)
        _error_bars(ax, xs, series, style["color"])
    ax.set_xlabel(f"LLM prefill FLOPs relative to unpruned ({flops} convention)")
    ax.set_ylabel(ACCURACY_LABEL)
    ax.set_title("Accuracy vs FLOPs")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


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


def tokens_per_layer_figure(records: Iterable[dict[str, Any]], keep: float | None = None) -> Figure:
    """Mean visual tokens each LLM layer saw, one line per strategy@keep (``none`` dashed); with
    ``keep``, only that budget's strategies (and ``none``)."""
    curves = tokens_per_layer(records)
    if keep is not None:
        curves = {k: v for k, v in curves.items() if k[0] == REFERENCE or abs(k[1] - keep) < 1e-9}
    with_unit = len({unit for (s, _, unit) in curves if s != REFERENCE}) > 1
    fig = _figure(len(curves))
    ax = fig.add_subplot()
    keeps = sorted({k for (s, k, _) in curves if s != REFERENCE}, reverse=True)
    dashes = {k: _KEEP_LINES[i % len(_KEEP_LINES)] for i, k in enumerate(keeps)}
    for (strategy, k, unit), curve in curves.items():
        name = label({"strategy": strategy, "keep": k, "unit": unit}, with_unit)
        style = REFERENCE_STYLE
        if strategy != REFERENCE:
            style = {**strategy_style(strategy), "linestyle": dashes[k], "markersize": 4}
        ax.plot(range(len(curve)), curve, label=name, **style)
    ax.set_xlabel("LLM layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("visual tokens (mean over items)")
    ax.set_title("Visual tokens per layer" + (f" (keep {keep:g})" if keep is not None else ""))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


_KEEP_LINES = ("-", "--", ":", "-.")


def write_plots(
    records: Iterable[dict[str, Any]], out_dir: str | Path, flops: str = "exact", pdf: bool = False
) -> list[Path]:
    """The three report figures for ``records`` into ``out_dir``: PNG (plus PDF when asked)."""
    records = list(records)
    rows = report_rows(records)
    out = Path(out_dir)
    paths: list[Path] = []
    figures = [
        ("accuracy_vs_keep", accuracy_vs_keep(rows)),
        (f"accuracy_vs_flops_{flops}", accuracy_vs_flops(rows, flops)),
    ]
    keeps = sorted({r.keep for r in rows if r.strategy != REFERENCE})
    if len(keeps) > 1 and len(rows) > 12:  # one readable figure per budget instead of a tangle
        figures += [
            (f"tokens_per_layer_keep{k:g}".replace(".", "p"), tokens_per_layer_figure(records, k))
            for k in keeps
        ]
    else:
        figures.append(("tokens_per_layer", tokens_per_layer_figure(records)))
    for stem, fig in figures:
        paths += save(fig, out / stem, pdf)
    return paths


# --------------------------------------------------------------------------- the prune-bench plot set
RETENTION_OF_UNIT = {"input": "input", "layer-average": "layer_average", "flops": "layer_average"}


def main_rows(rows: Sequence[SummaryRow]) -> list[SummaryRow]:
    """The rows of the headline figures: ablation variants whose strategy also ran are left to the
    ablation figures."""
    plain = {r.strategy for r in rows}
    return [r for r in rows if (v := split_variant(r.strategy)) is None or v[0] not in plain]


def accuracy_vs_retention(rows: Sequence[SummaryRow]) -> Figure:
    """Average accuracy against the retention each strategy achieved (in the unit it was budgeted in;
    a strategy that could not reach a budget sits where it actually was)."""
    groups = _series(rows)
    unit = _unit_label(rows) or "layer-average"
    measure = RETENTION_OF_UNIT.get(unit, "layer_average")
    fig = _figure(len(groups))
    ax = fig.add_subplot()
    ref = reference_row(rows)
    if ref is not None:
        ax.axhline(ref.average, label=f"{REFERENCE} (unpruned)", **REFERENCE_STYLE)
        _reference_band(ax, ref)
    for name, series in groups.items():
        series = sorted(series, key=lambda r: r.retention[measure])
        x = [100 * r.retention[measure] for r in series]
        style = _style_of(name)
        ax.plot(x, [r.average for r in series], label=name, **style)
        _error_bars(ax, x, series, style["color"])
    what = "entering the LLM" if measure == "input" else "averaged over LLM layers"
    ax.set_xlabel(f"visual tokens kept, {what} (% of unpruned, achieved)")
    ax.xaxis.set_major_locator(MaxNLocator(steps=[1, 2, 5, 10]))
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_ylabel(ACCURACY_LABEL)
    ax.set_title("Accuracy vs retention")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and accuracy (higher), by cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def accuracy_vs_cost(rows: Sequence[SummaryRow], cost: str = "flops", flops: str = "exact") -> Figure:
    """Average accuracy against a per-item cost, ``flops`` (prefill FLOPs under convention ``flops``)
    or ``ttft`` (the recorded prefill time, median per item), with the Pareto front marked."""
    if cost not in ("flops", "ttft"):
        raise ValueError(f"cost must be 'flops' or 'ttft', got {cost!r}")
    groups = _series(rows)
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
        points.append((value(ref), ref.average))
    for name, series in groups.items():
        series = sorted(series, key=value)
        xs, ys = [value(r) for r in series], [r.average for r in series]
        style = _style_of(name)
        ax.plot(xs, ys, label=name, **style)
        _error_bars(ax, xs, series, style["color"])
        points += zip(xs, ys, strict=True)
    _draw_front(ax, pareto_front(points))
    if cost == "flops" and ref is not None and value(ref) > 0:
        _percent_axis(ax, value(ref), "% of unpruned prefill FLOPs")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ACCURACY_LABEL)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax)
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


def tokens_per_layer_panels(records: Iterable[dict[str, Any]], rows: Sequence[SummaryRow]) -> Figure:
    """One panel per strategy: the mean visual tokens each LLM layer saw, one line per keep, the
    unpruned count dashed. Staircases (HieraVid, PyramidDrop) and single steps (FastV) read at a glance."""
    curves = tokens_per_layer(records)
    shown = {r.strategy for r in main_rows(rows)} - {REFERENCE}
    by_strategy: dict[str, dict[tuple[float, str], list[float]]] = defaultdict(dict)
    for (strategy, keep, unit), curve in curves.items():
        if strategy in shown:
            by_strategy[strategy][(keep, unit)] = curve
    reference = next((c for (s, _, _), c in curves.items() if s == REFERENCE), None)
    names = sorted(by_strategy)
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
        style = strategy_style(name)
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
    fig.suptitle("Visual tokens each LLM layer processed (mean over items)")
    return fig


def ablation_figure(
    rows: Sequence[SummaryRow], strategy: str, labels: Mapping[str, str] | None = None
) -> Figure:
    """``strategy`` and each of its variants (``strategy[option=value]``), one panel per keep:
    horizontal bars of average accuracy, the change vs the strategy written at each bar's end."""
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
    ref = reference_row(rows)
    colour = strategy_style(strategy)["color"]
    names = [strategy, *variants]
    texts = [f"{strategy} (default)"] + [labels.get(v, split_variant(v)[1]) for v in variants]  # type: ignore[index]
    fig = Figure(
        figsize=(2.2 + 2.6 * max(1, len(budgets)), 0.9 + 0.36 * len(names) + 0.5), layout="constrained"
    )
    axes = fig.subplots(1, max(1, len(budgets)), sharey=True, squeeze=False)[0]
    top = max([r.average for r in rows] + [1.0])
    for ax, budget in zip(axes, budgets or [None], strict=True):
        if budget is None:
            break
        b = base[budget]
        values = [b.average] + [
            by_variant[(v, *budget)].average if (v, *budget) in by_variant else math.nan for v in variants
        ]
        y = list(range(len(names)))
        face = [colour] + [to_rgba(colour, 0.45)] * len(variants)
        ax.barh(y, values, color=face, edgecolor=colour, height=0.7)
        ax.axvline(b.average, color=colour, linewidth=1.0)
        if ref is not None:
            ax.axvline(ref.average, **REFERENCE_STYLE)
        for yi, v in zip(y, values, strict=True):
            if math.isnan(v):
                ax.text(1, yi, "not run", va="center", fontsize="x-small", color="0.4")
                continue
            text = f"{v:.1f}" + ("" if yi == 0 else f" ({v - b.average:+.1f})")
            inside = v > 0.45 * top  # long bars carry their value inside, so no text leaves the axes
            ax.text(
                v - top * 0.015 if inside else v + top * 0.015,
                yi,
                text,
                va="center",
                ha="right" if inside else "left",
                fontsize="x-small",
                color="white" if inside and yi == 0 else "black",
            )
        ax.set_xlim(0, top * 1.08)
        ax.set_title(f"keep {budget[0]:g}" + (f" ({budget[1]})" if with_unit else ""), fontsize="medium")
        ax.set_xlabel("average accuracy (%)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), texts)
    axes[0].invert_yaxis()
    if ref is not None:
        fig.legend(
            [Line2D([], [], **REFERENCE_STYLE), Line2D([], [], color=colour)],
            [f"{REFERENCE} (unpruned)", f"{strategy} (default)"],
            loc="outside lower center",
            ncols=2,
            fontsize="small",
        )
    fig.suptitle(f"{strategy}: ablations at equal budget (bracket: change vs default, points)")
    return fig


def ablated_strategies(rows: Sequence[SummaryRow]) -> list[str]:
    """Strategies that ran beside at least one of their variants."""
    plain = {r.strategy for r in rows}
    return sorted({v[0] for r in rows if (v := split_variant(r.strategy)) is not None and v[0] in plain})


def write_figures(
    records: Iterable[dict[str, Any]],
    out_dir: str | Path,
    flops: str = "exact",
    labels: Mapping[str, str] | None = None,
    pdf: bool = True,
    on_write: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Every figure of ``prune-bench plot`` into ``out_dir`` (PNG, and vector PDF unless ``pdf`` is
    off): accuracy vs retention, vs prefill FLOPs and vs TTFT (Pareto fronts marked), visual tokens
    per layer per strategy, and one ablation figure per strategy run with variants (``labels`` maps a
    variant's recorded name to its ablation label)."""
    records = list(records)
    rows = report_rows(records)
    headline = main_rows(rows)
    figures: list[tuple[str, Callable[[], Figure]]] = [
        ("accuracy_vs_retention", lambda: accuracy_vs_retention(headline)),
        (f"accuracy_vs_flops_{flops}", lambda: accuracy_vs_cost(headline, "flops", flops)),
        ("accuracy_vs_ttft", lambda: accuracy_vs_cost(headline, "ttft")),
        ("tokens_per_layer", lambda: tokens_per_layer_panels(records, rows)),
    ]
    for name in ablated_strategies(rows):
        figures.append((f"ablation_{name}", lambda name=name: ablation_figure(rows, name, labels)))  # type: ignore[misc]
    paths: list[Path] = []
    for stem, draw in figures:
        for path in save(draw(), Path(out_dir) / stem, pdf):
            paths.append(path)
            if on_write is not None:
                on_write(path)
    return paths
