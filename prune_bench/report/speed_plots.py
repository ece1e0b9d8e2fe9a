"""Figures of a ``prune-bench speed`` run: LM-prefill speed-up against the FLOPs ideal, and the
pruning overhead, per strategy and frame count.

Over several budgets each strategy is a line against keep. At one budget (every pruned row at the
same keep, within :data:`ONE_BUDGET`) a line would be a column of points on an axis a few hundredths
wide, so each strategy is a bar instead, its value written on it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from prune_bench.report.plots import save
from prune_bench.report.styles import strategy_style

if TYPE_CHECKING:
    from prune_bench.runner.speed import SpeedRow

#: keeps within this fraction of the largest count as one budget (bars instead of lines)
ONE_BUDGET = 0.05
TARGET_OVERHEAD = 5.0  # %


def _series(rows: list[SpeedRow], frames: int) -> dict[str, list[SpeedRow]]:
    out: dict[str, list[SpeedRow]] = defaultdict(list)
    for r in rows:
        if r.frames == frames and r.strategy != "none":
            out[r.strategy].append(r)
    return {k: sorted(v, key=lambda r: r.keep) for k, v in sorted(out.items())}


def single_budget(rows: list[SpeedRow]) -> float | None:
    """The keep every pruned row ran at (within :data:`ONE_BUDGET`, relative), or None over several."""
    keeps = [r.keep for r in rows if r.strategy != "none"]
    if not keeps or max(keeps) - min(keeps) > ONE_BUDGET * max(keeps):
        return None
    return max(keeps)


def _panels(rows: list[SpeedRow]) -> tuple[Figure, list[tuple[Axes, int]]]:
    frame_counts = sorted({r.frames for r in rows})
    fig = Figure(figsize=(7.5 * len(frame_counts), 4.2), layout="constrained")
    axes = fig.subplots(1, len(frame_counts), squeeze=False)[0]
    return fig, list(zip(axes, frame_counts, strict=True))


def _bars(ax: Axes, series: dict[str, list[SpeedRow]], value: str, fmt: str, ideal: bool = False) -> None:
    """One bar per strategy of ``value`` (a SpeedRow attribute), written on it with ``fmt``; with
    ``ideal``, the FLOPs-ideal speed-up as a dotted outline behind it."""
    names = list(series)
    x = range(len(names))
    colours = [strategy_style(n)["color"] for n in names]
    values = [getattr(series[n][0], value) * (100 if value == "overhead" else 1) for n in names]
    if ideal:
        ideals = [series[n][0].ideal_speedup for n in names]
        ax.bar(x, ideals, width=0.8, fill=False, edgecolor=colours, linestyle=":", linewidth=1.5)
    bars = ax.bar(x, values, width=0.55, color=colours)
    ax.bar_label(bars, [fmt.format(v) for v in values], fontsize="small", padding=2)
    ax.set_xticks(
        list(x), names, rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center"
    )


def run_title(what: str, meta: Mapping[str, Any] | None) -> str:
    """``what`` over the run it measured: architecture, machine, dtype, attention, input, repeats (the
    parts ``meta``, a speed run's ``speed.json`` meta, knows)."""
    if not meta:
        return what
    machine = meta.get("machine") or {}
    parts = [f"{meta['arch']} (random weights)" if meta.get("arch") else None, machine.get("device")]
    parts.append(", ".join(str(machine[k]) for k in ("dtype", "attention") if machine.get(k)) or None)
    if meta.get("input"):
        parts.append(f"input: {meta['input']}")
    if meta.get("repeats"):
        parts.append(f"median of {meta['repeats']}")
    return what + "\n" + ", ".join(p for p in parts if p)


def speedup_figure(rows: list[SpeedRow], meta: Mapping[str, Any] | None = None) -> Figure:
    """Measured LM-prefill speed-up over unpruned per strategy, beside the FLOPs-ideal one; the title
    names the run (:func:`run_title`)."""
    keep = single_budget(rows)
    fig, panels = _panels(rows)
    fig.suptitle(run_title("LM prefill speed-up", meta), fontsize=11)
    for ax, frames in panels:
        series = _series(rows, frames)
        if keep is not None:
            _bars(ax, series, "speedup", "{:.2f}x", ideal=True)
            ax.axhline(1.0, color="0.4", linestyle="--", linewidth=1)
            ax.set_title(f"{frames} frames, keep {keep:g} (dotted outline: FLOPs-ideal)")
        else:
            for name, s in series.items():
                style = strategy_style(name)
                keeps = [r.keep for r in s]
                ax.plot(keeps, [r.speedup for r in s], **style, label=name)
                ax.plot(keeps, [r.ideal_speedup for r in s], linestyle=":", color=style["color"])
            ax.set_title(f"{frames} frames (dotted: FLOPs-ideal)")
            ax.set_xlabel("keep (layer-average)")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_ylabel("LM prefill speed-up over unpruned")
        ax.grid(alpha=0.3, axis="y" if keep is not None else "both")
    return fig


def overhead_figure(rows: list[SpeedRow], meta: Mapping[str, Any] | None = None) -> Figure:
    """Pruning time as a share of the pruned LM prefill per strategy, against the 5% target."""
    keep = single_budget(rows)
    fig, panels = _panels(rows)
    fig.suptitle(run_title("Pruning overhead", meta), fontsize=11)
    for ax, frames in panels:
        series = _series(rows, frames)
        if keep is not None:
            _bars(ax, series, "overhead", "{:.3g}%")
            ax.set_title(f"{frames} frames, keep {keep:g}")
        else:
            for name, s in series.items():
                ax.plot(
                    [r.keep for r in s], [100 * r.overhead for r in s], **strategy_style(name), label=name
                )
            ax.set_title(f"{frames} frames")
            ax.set_xlabel("keep (layer-average)")
        ax.axhline(TARGET_OVERHEAD, color="0.4", linestyle="--", linewidth=1, label="5% target")
        ax.set_ylabel("pruning time / pruned prefill (%)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        if keep is not None:  # bars on a log axis need a bottom below the smallest, a decade down
            shown = [100 * r.overhead for s in series.values() for r in s if r.overhead > 0] or [1.0]
            ax.set_ylim(10 ** math.floor(math.log10(min(shown))), 2 * max(*shown, TARGET_OVERHEAD))
        ax.grid(alpha=0.3, axis="y" if keep is not None else "both")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def write_speed_plots(
    rows: list[SpeedRow], out_dir: Path, meta: Mapping[str, Any] | None = None
) -> list[Path]:
    """``speedup.png`` and ``overhead.png`` of a speed run (none without a pruned row); ``meta`` (the
    run's ``speed.json`` meta) names the run in the titles."""
    if not any(r.strategy != "none" for r in rows):
        return []
    return [
        *save(speedup_figure(rows, meta), out_dir / "speedup"),
        *save(overhead_figure(rows, meta), out_dir / "overhead"),
    ]
