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
    if ax.get_legend_handles_labels()[0]:  # an empty legend() warns
        ax.legend(fontsize="small")


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
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ref = reference_row(rows)
    if ref is not None:
        ax.axhline(ref.average, label=f"{REFERENCE} (unpruned)", **REFERENCE_STYLE)
    for name, series in _series(rows).items():
        ax.plot([r.keep for r in series], [r.average for r in series], marker="o", label=name)
    units = {r.unit for r in rows if r.strategy != REFERENCE}
    ax.set_xlabel(f"keep ({units.pop()})" if len(units) == 1 else "keep")
    ax.set_ylabel("average accuracy (%)")
    ax.set_title("Accuracy vs keep")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def accuracy_vs_flops(rows: Sequence[SummaryRow], flops: str = "exact") -> Figure:
    """Average accuracy against prefill FLOPs relative to the unpruned model (convention ``flops``)."""
    fig = Figure(figsize=(6, 4), layout="constrained")
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
    for name, series in _series(rows).items():
        series = sorted(series, key=lambda r: r.flops_ratio[flops])
        ax.plot([r.flops_ratio[flops] for r in series], [r.average for r in series], marker="o", label=name)
    ax.set_xlabel(f"relative prefill FLOPs ({flops})")
    ax.set_ylabel("average accuracy (%)")
    ax.set_title("Accuracy vs FLOPs")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def tokens_per_layer_figure(records: Iterable[dict[str, Any]]) -> Figure:
    """Mean visual tokens each LLM layer saw, one line per strategy@keep (``none`` dashed)."""
    curves = tokens_per_layer(records)
    with_unit = len({unit for (s, _, unit) in curves if s != REFERENCE}) > 1
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for (strategy, keep, unit), curve in curves.items():
        name = label({"strategy": strategy, "keep": keep, "unit": unit}, with_unit)
        style = REFERENCE_STYLE if strategy == REFERENCE else {"marker": "." if len(curve) <= 40 else None}
        ax.plot(range(len(curve)), curve, label=name, **style)
    ax.set_xlabel("LLM layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("visual tokens (mean over items)")
    ax.set_title("Visual tokens per layer")
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
    for stem, fig in (
        ("accuracy_vs_keep", accuracy_vs_keep(rows)),
        (f"accuracy_vs_flops_{flops}", accuracy_vs_flops(rows, flops)),
        ("tokens_per_layer", tokens_per_layer_figure(records)),
    ):
        paths += save(fig, out / stem, pdf)
    return paths
