"""``prune-bench speed`` figures: lines over several budgets, bars (not a column of points) at one."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from prune_bench.report.speed_plots import overhead_figure, single_budget, speedup_figure, write_speed_plots
from prune_bench.report.styles import strategy_style
from prune_bench.runner.speed import SpeedRow


def _row(strategy: str, keep: float, speedup: float, ideal: float, pruning_ms: float) -> SpeedRow:
    return SpeedRow(
        strategy=strategy, keep=keep, frames=16, visual_tokens=1000, retention_layer_average=keep,
        retention_input=keep, vision_ms=5.0, pruning_ms=pruning_ms, lm_prefill_ms=100.0 / speedup,
        prefill_ms=100.0 / speedup, ttft_ms=100.0 / speedup, decode_ms_per_token=1.0, peak_mem_gib=1.0,
        kv_cache_mib=1.0, flops_exact=1.0 / ideal, flops_paper=1.0 / ideal, speedup=speedup,
        ideal_speedup=ideal,
    )  # fmt: skip


ONE_BUDGET_ROWS = [
    _row("none", 1.0, 1.0, 1.0, 0.0),
    _row("fastv", 0.3, 2.1, 2.8, 0.5),
    _row("hieravid", 0.3, 1.8, 2.9, 4.0),
    _row("random", 0.3, 2.5, 3.0, 0.1),
]
SWEEP_ROWS = ONE_BUDGET_ROWS + [_row("fastv", 0.1, 4.0, 6.0, 0.4), _row("random", 0.1, 5.0, 7.0, 0.1)]


def _filled_bars(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_fill()]


def test_one_budget_is_a_bar_per_strategy_with_the_ideal_behind_it() -> None:
    assert single_budget(ONE_BUDGET_ROWS) == 0.3
    ax = speedup_figure(ONE_BUDGET_ROWS).axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    assert names == ["fastv", "hieravid", "random"]
    bars = _filled_bars(ax)
    assert [b.get_height() for b in bars] == pytest.approx([2.1, 1.8, 2.5])
    for bar, name in zip(bars, names, strict=True):
        assert bar.get_facecolor() == pytest.approx(to_rgba(strategy_style(name)["color"]))
    ideals = [p.get_height() for p in ax.patches if not p.get_fill()]
    assert ideals == pytest.approx([2.8, 2.9, 3.0])
    assert "keep 0.3" in ax.get_title()
    # no x=keep scatter: no data line besides the unpruned level at 1
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[1.0, 1.0]]


def test_one_budget_overhead_bars_in_percent() -> None:
    ax = overhead_figure(ONE_BUDGET_ROWS).axes[0]
    bars = _filled_bars(ax)
    want = [100 * r.overhead for r in ONE_BUDGET_ROWS[1:]]
    assert [b.get_height() for b in bars] == pytest.approx(want)
    assert [t.get_text() for t in ax.texts] == [f"{v:.3g}%" for v in want]
    assert ax.get_ylim()[0] == pytest.approx(0.1)  # a decade below the smallest (0.25%)


def test_keeps_a_hair_apart_still_count_as_one_budget() -> None:
    rows = [*ONE_BUDGET_ROWS, _row("pdrop", 0.305, 1.5, 2.7, 1.0)]
    assert single_budget(rows) == 0.305
    assert len(_filled_bars(speedup_figure(rows).axes[0])) == 4


def test_several_budgets_stay_lines_against_keep() -> None:
    assert single_budget(SWEEP_ROWS) is None
    ax = speedup_figure(SWEEP_ROWS).axes[0]
    assert not _filled_bars(ax)
    fastv = next(line for line in ax.get_lines() if line.get_label() == "fastv")
    assert list(fastv.get_xdata()) == [0.1, 0.3] and list(fastv.get_ydata()) == pytest.approx([4.0, 2.1])


@pytest.mark.parametrize("rows", [ONE_BUDGET_ROWS, SWEEP_ROWS])
def test_speed_plots_write_without_warnings(tmp_path: Path, rows: list[SpeedRow]) -> None:
    paths = write_speed_plots(rows, tmp_path)
    assert sorted(p.name for p in paths) == ["overhead.png", "speedup.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def test_speed_figure_titles_name_the_run_and_fit() -> None:
    meta = {
        "arch": "llava-onevision-7b",
        "machine": {"device": "NVIDIA H200", "dtype": "bfloat16", "attention": "sdpa"},
        "repeats": 3,
        "input": "scenes",
    }
    for figure in (speedup_figure, overhead_figure):
        fig = figure(ONE_BUDGET_ROWS, meta)
        title = fig._suptitle.get_text()  # noqa: SLF001 - matplotlib keeps the suptitle there
        for part in ("llava-onevision-7b", "NVIDIA H200", "bfloat16", "scenes", "median of 3"):
            assert part in title, (part, title)
        fig.canvas.draw()
        box = fig._suptitle.get_window_extent()  # noqa: SLF001
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    assert "\n" not in speedup_figure(ONE_BUDGET_ROWS)._suptitle.get_text()  # noqa: SLF001 - rows alone
