"""Report figures, drawn with matplotlib's Agg renderer (no display, no pyplot state).

Figures are built as :class:`matplotlib.figure.Figure` objects directly, so nothing here selects a
backend or opens a window, and importing this module changes no global matplotlib setting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from prune_bench.report.data import (
    REFERENCE,
    label,
    mixed_units,
    reference_row,
    report_rows,
    tokens_per_layer,
)
from prune_bench.runner.summary import SummaryRow

REFERENCE_STYLE: dict[str, Any] = {"color": "0.4", "linestyle": "--", "linewidth": 1.2}


def save(fig: Figure, stem: str | Path, pdf: bool = False) -> list[Path]:
    """Write ``stem.png`` (and ``stem.pdf`` when asked), creating the folder; returns the paths written."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png")] + ([stem.with_suffix(".pdf")] if pdf else [])
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths


def _legend(ax: Axes) -> None:
    handles = ax.get_legend_handles_labels()[0]
    if not handles:  # an empty legend() warns
        return
    if len(handles) > 6:  # many series: beside the axes, not over the data
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize="small")


_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_LINES = ("-", "--", "-.", ":")


def _style(i: int) -> dict[str, Any]:
    """Distinct colour, marker and dash for series ``i`` (20 colours before anything repeats)."""
    return {
        "color": f"C{i % 10}" if i < 10 else _TAB20[(i - 10) % len(_TAB20)],
        "marker": _MARKERS[i % len(_MARKERS)],
        "linestyle": _LINES[(i // 10) % len(_LINES)],
    }


_TAB20 = (
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)


def _figure(n_series: int) -> Figure:
    return Figure(figsize=(6 + (3.5 if n_series > 6 else 0), 4.2), layout="constrained")


def _series(rows: Sequence[SummaryRow]) -> dict[str, list[SummaryRow]]:
    """Pruned rows by strategy (and unit, when mixed), each sorted by keep."""
    with_unit = mixed_units(rows)
    out: dict[str, list[SummaryRow]] = defaultdict(list)
    for r in rows:
        if r.strategy != REFERENCE:
            out[f"{r.strategy} ({r.unit})" if with_unit else r.strategy].append(r)
    return {k: sorted(v, key=lambda r: r.keep) for k, v in sorted(out.items())}


def accuracy_vs_keep(rows: Sequence[SummaryRow]) -> Figure:
    """Average accuracy against keep, one line per strategy; ``none`` as a dashed horizontal line."""
    groups = _series(rows)
    fig = _figure(len(groups))
    ax = fig.add_subplot()
    ref = reference_row(rows)
    if ref is not None:
        ax.axhline(ref.average, label=f"{REFERENCE} (unpruned)", **REFERENCE_STYLE)
    for i, (name, series) in enumerate(groups.items()):
        ax.plot([r.keep for r in series], [r.average for r in series], label=name, **_style(i))
    units = {r.unit for r in rows if r.strategy != REFERENCE}
    ax.set_xlabel(f"keep ({units.pop()})" if len(units) == 1 else "keep")
    ax.set_ylabel("average accuracy (%)")
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
        ax.plot(
            [ref.flops_ratio[flops]],
            [ref.average],
            marker="*",
            markersize=11,
            linestyle="none",
            color=REFERENCE_STYLE["color"],
            label=f"{REFERENCE} (unpruned)",
        )
    for i, (name, series) in enumerate(groups.items()):
        series = sorted(series, key=lambda r: r.flops_ratio[flops])
        ax.plot([r.flops_ratio[flops] for r in series], [r.average for r in series], label=name, **_style(i))
    ax.set_xlabel(f"relative prefill FLOPs ({flops})")
    ax.set_ylabel("average accuracy (%)")
    ax.set_title("Accuracy vs FLOPs")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def tokens_per_layer_figure(records: Iterable[dict[str, Any]], keep: float | None = None) -> Figure:
    """Mean visual tokens each LLM layer saw, one line per strategy@keep (``none`` dashed); with
    ``keep``, only that budget's strategies (and ``none``)."""
    curves = tokens_per_layer(records)
    if keep is not None:
        curves = {k: v for k, v in curves.items() if k[0] == REFERENCE or abs(k[1] - keep) < 1e-9}
    with_unit = len({unit for (s, _, unit) in curves if s != REFERENCE}) > 1
    fig = _figure(len(curves))
    ax = fig.add_subplot()
    for i, ((strategy, k, unit), curve) in enumerate(curves.items()):
        name = label({"strategy": strategy, "keep": k, "unit": unit}, with_unit)
        style = REFERENCE_STYLE if strategy == REFERENCE else {**_style(i), "markersize": 4}
        ax.plot(range(len(curve)), curve, label=name, **style)
    ax.set_xlabel("LLM layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("visual tokens (mean over items)")
    ax.set_title("Visual tokens per layer" + (f" (keep {keep:g})" if keep is not None else ""))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def write_plots(
    records: Iterable[dict[str, Any]], out_dir: str | Path, flops: str = "exact", pdf: bool = False
) -> list[Path]:
    """All report figures for ``records`` into ``out_dir``: PNG (plus PDF when asked); returns the paths."""
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
