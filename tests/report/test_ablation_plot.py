"""The ablation figure: an axis that starts where differences are readable, and bars that ran at
another budget marked as such."""

from __future__ import annotations

import pytest
from matplotlib.patches import Rectangle

from prune_bench.report.ablation_plot import ablation_figure, achieved_budget, axis_start, off_budget
from prune_bench.runner.summary import SummaryRow


def _row(strategy: str, average: float, achieved: float = 0.3, half_width: float = 2.0, **kw) -> SummaryRow:
    return SummaryRow(
        strategy=strategy,
        keep=kw.get("keep", 0.3),
        unit=kw.get("unit", "layer-average"),
        items=kw.get("items", 300),
        average=average,
        average_ci=(average - half_width, average + half_width),
        retention={"input": achieved, "layer_average": achieved},
        flops_ratio={"exact": achieved},
    )


def _bars(fig) -> list[Rectangle]:
    return [p for p in fig.axes[0].patches if p.get_height() == pytest.approx(0.7)]


CLOSE = [
    _row("none", 60.0, 1.0, keep=1.0),
    _row("hieravid", 55.0),
    _row("hieravid[segment_level=false]", 53.5),
    _row("hieravid[frame_level=false]", 54.0),
]


def test_bars_within_a_few_points_start_below_the_lowest_interval() -> None:
    fig = ablation_figure(CLOSE, "hieravid")
    ax = fig.axes[0]
    start = ax.get_xlim()[0]
    assert 0 < start < 51.5  # below the lowest interval low (53.5 - 2), not at 0
    assert start == axis_start(51.5, 60.0) == 50.0  # intervals 51.5..57, the reference at 60
    for bar in _bars(fig):  # each bar runs from the axis start to its accuracy
        assert bar.get_x() == pytest.approx(start)
    ends = sorted(b.get_x() + b.get_width() for b in _bars(fig))
    assert ends == pytest.approx([53.5, 54.0, 55.0])
    assert f"starts at {start:g}, not 0" in fig.get_supxlabel()
    assert f"from {start:g}" in ax.get_xlabel()


def test_bars_far_apart_start_at_0_and_say_nothing_about_it() -> None:
    rows = [_row("hieravid", 55.0), _row("hieravid[segment_level=false]", 20.0)]
    fig = ablation_figure(rows, "hieravid")
    assert fig.axes[0].get_xlim()[0] == 0
    assert "not 0" not in fig.get_supxlabel() and "from" not in fig.axes[0].get_xlabel()


def test_axis_start() -> None:
    assert axis_start(10.0, 60.0) == 0.0  # the spread is larger than the distance from 0
    assert axis_start(70.0, 80.0) == 65.0  # a multiple of 5 at least a point below
    assert axis_start(66.0, 83.0) == 60.0


def test_a_variant_off_the_panels_budget_is_hatched_and_said() -> None:
    rows = [*CLOSE[:3], _row("hieravid[frame_level=false]", 54.0, achieved=0.36)]
    assert off_budget(rows[1:]) == [False, False, True]
    fig = ablation_figure(rows, "hieravid")
    hatched = {round(b.get_x() + b.get_width(), 1) for b in _bars(fig) if b.get_hatch()}
    assert hatched == {54.0}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "achieved budget differs" in legend
    assert "achieved budget differs" in fig.get_supxlabel()
    assert any("achieved 36%" in t.get_text() for t in fig.axes[0].texts)
    # at one budget, nothing hatched and nothing said
    fig = ablation_figure(CLOSE, "hieravid")
    assert not any(b.get_hatch() for b in _bars(fig))
    assert "achieved budget differs" not in fig.get_supxlabel()
    assert "achieved budget differs" not in [t.get_text() for t in fig.legends[0].get_texts()]


def test_achieved_budget_is_in_the_unit_budgeted() -> None:
    row = SummaryRow(
        "a", 0.3, "input", 10, retention={"input": 0.2, "layer_average": 0.4}, flops_ratio={"exact": 0.5}
    )
    assert achieved_budget(row) == 0.2
    row.unit = "layer-average"
    assert achieved_budget(row) == 0.4
    row.unit = "flops"
    assert achieved_budget(row) == 0.5


def test_small_n_is_said_under_the_bars() -> None:
    rows = [_row("hieravid", 55.0, items=40), _row("hieravid[segment_level=false]", 53.0, items=40)]
    assert "n < 100: intervals are wide" in ablation_figure(rows, "hieravid").get_supxlabel()
    assert "intervals are wide" not in ablation_figure(CLOSE, "hieravid").get_supxlabel()
