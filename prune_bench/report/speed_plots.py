"""Figures of a ``prune-bench speed`` run: LM-prefill speed-up against the FLOPs ideal, and the
pruning overhead, per strategy and frame count."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from prune_bench.report.plots import save, strategy_style

if TYPE_CHECKING:
    from prune_bench.runner.speed import SpeedRow


def _series(rows: list[SpeedRow], frames: int) -> dict[str, list[SpeedRow]]:
    out: dict[str, list[SpeedRow]] = defaultdict(list)
    for r in rows:
        if r.frames == frames and r.strategy != "none":
            out[r.strategy].append(r)
    return {k: sorted(v, key=lambda r: r.keep) for k, v in sorted(out.items())}


def speedup_figure(rows: list[SpeedRow]) -> Figure:
    frame_counts = sorted({r.frames for r in rows})
    fig = Figure(figsize=(7.5 * len(frame_counts), 4.2), layout="constrained")
    axes = fig.subplots(1, len(frame_counts), squeeze=False)[0]
    for ax, frames in zip(axes, frame_counts, strict=True):
        for name, series in _series(rows, frames).items():
            style = strategy_style(name)
            keeps = [r.keep for r in series]
            ax.plot(keeps, [r.speedup for r in series], **style, label=name)
            ax.plot(keeps, [r.ideal_speedup for r in series], linestyle=":", color=style["color"])
        ax.set_title(f"{frames} frames (dotted: FLOPs-ideal)")
        ax.set_xlabel("keep (layer-average)")
        ax.set_ylabel("LM prefill speed-up over unpruned")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def overhead_figure(rows: list[SpeedRow]) -> Figure:
    frame_counts = sorted({r.frames for r in rows})
    fig = Figure(figsize=(7.5 * len(frame_counts), 4.2), layout="constrained")
    axes = fig.subplots(1, len(frame_counts), squeeze=False)[0]
    for ax, frames in zip(axes, frame_counts, strict=True):
        for name, series in _series(rows, frames).items():
            ax.plot(
                [r.keep for r in series],
                [100 * r.overhead for r in series],
                **strategy_style(name),
                label=name,
            )
        ax.axhline(5.0, color="0.4", linestyle="--", linewidth=1, label="5% target")
        ax.set_title(f"{frames} frames")
        ax.set_xlabel("keep (layer-average)")
        ax.set_ylabel("pruning time / pruned prefill (%)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def write_speed_plots(rows: list[SpeedRow], out_dir: Path) -> list[Path]:
    if not any(r.strategy != "none" for r in rows):
        return []
    return [
        *save(speedup_figure(rows), out_dir / "speedup"),
        *save(overhead_figure(rows), out_dir / "overhead"),
    ]
