"""The figures from hand-made records: intervals on every accuracy figure, titles that name the run
and fit, Pareto fronts over the pruned points, one marker per variant, the small-n caption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from prune_bench.report.ablation_plot import ablation_figure
from prune_bench.report.captions import SMALL_N_NOTE, items_text, run_line, short_model
from prune_bench.report.data import report_rows
from prune_bench.report.plots import (
    accuracy_vs_cost,
    accuracy_vs_retention,
    main_rows,
    pareto_front,
    tokens_per_layer_panels,
    write_figures,
)
from prune_bench.report.styles import strategy_style
from prune_bench.runner.summary import SummaryRow

from .conftest import PLAN, make_records

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LONG_CONTEXT = {
    "model": "/data/checkpoints/hub/models--Qwen/snapshots/0123456789abcdef/Qwen2-VL-7B-Instruct",
    "benchmark": "videomme",
    "frames": 32,
}
VARIANTS = {
    ("hieravid", 0.5, "layer-average"): ([True, True, True, False], [True, True], 0.5, 50.0),
    ("hieravid[segment_level=false]", 0.5, "layer-average"): ([True, True, False, False], [True, True], 0.5, 50.0),
    ("hieravid[frame_level=false]", 0.5, "layer-average"): ([True, False, False, False], [True, True], 0.5, 50.0),
}  # fmt: skip


@pytest.fixture
def ablated() -> list[dict[str, Any]]:
    """The conftest records plus hieravid and two of its variants at keep 0.5."""
    return make_records({**PLAN, **VARIANTS})


def _figures(records: list[dict[str, Any]], context: dict[str, Any] | None = None) -> dict[str, Figure]:
    rows = report_rows(records)
    headline = main_rows(rows)
    return {
        "retention": accuracy_vs_retention(headline, context),
        "flops": accuracy_vs_cost(headline, "flops", context=context),
        "ttft": accuracy_vs_cost(headline, "ttft", context=context),
        "layers": tokens_per_layer_panels(records, rows, context),
        "ablation": ablation_figure(rows, "hieravid", context=context),
    }


ACCURACY = ("retention", "flops", "ttft", "ablation")


def test_write_figures_makes_every_figure(tmp_path: Path, ablated: list[dict[str, Any]]) -> None:
    paths = write_figures(ablated, tmp_path / "figs", flops="paper", pdf=False)
    assert sorted(p.name for p in paths) == [
        "ablation_hieravid.png",
        "accuracy_vs_flops_paper.png",
        "accuracy_vs_retention.png",
        "accuracy_vs_ttft.png",
        "tokens_per_layer.png",
    ]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_pdf_on_request(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    paths = write_figures(records, tmp_path, pdf=True)
    pdfs = [p for p in paths if p.suffix == ".pdf"]
    assert len(pdfs) == 4 and all(p.read_bytes().startswith(b"%PDF") for p in pdfs)


def test_empty_rows_draw_without_warnings(tmp_path: Path) -> None:
    # filterwarnings=error: an empty legend or layout trouble would fail here
    paths = write_figures([], tmp_path, pdf=False)
    assert paths and all(p.stat().st_size > 0 for p in paths)


def _vertical_bars(ax) -> list[tuple[float, float, float]]:
    """(x, low, high) of every vertical error bar of the axes."""
    out = []
    for coll in ax.collections:
        if isinstance(coll, LineCollection):
            out += [(float(s[0][0]), float(s[0][1]), float(s[1][1])) for s in coll.get_segments()]
    return out


def test_accuracy_points_carry_their_95_percent_intervals(records: list[dict[str, Any]]) -> None:
    rows = report_rows(records)
    none = next(r for r in rows if r.strategy == "none")
    pruned = [r for r in rows if r.strategy != "none"]
    for ax, x_of in (
        (accuracy_vs_retention(rows).axes[0], lambda r: 100 * r.retention["layer_average"]),
        (accuracy_vs_cost(rows, "flops").axes[0], lambda r: r.flops["exact"]),
        (accuracy_vs_cost(rows, "ttft").axes[0], lambda r: r.prefill_ms),
    ):
        assert "95% CI" in ax.get_ylabel()
        bars = _vertical_bars(ax)
        for r in pruned:  # a bar at the point's x from its interval's low to its high
            want = (x_of(r), *r.average_ci)
            assert any(got == pytest.approx(want) for got in bars), (ax.get_xlabel(), r.strategy, r.keep)
        # the reference's own interval: a light band behind the data
        bands = [p.get_bbox() for p in ax.patches]
        assert any((b.y0, b.y1) == pytest.approx(none.average_ci) for b in bands), ax.get_xlabel()


def _horizontal_bars(ax) -> list[tuple[float, float, float]]:
    """(y, low, high) of every horizontal error bar of the axes."""
    out = []
    for coll in ax.collections:
        if isinstance(coll, LineCollection):
            out += [(float(s[0][1]), float(s[0][0]), float(s[1][0])) for s in coll.get_segments()]
    return out


def test_ablation_bars_carry_their_95_percent_intervals(ablated: list[dict[str, Any]]) -> None:
    rows = report_rows(ablated)
    ax = ablation_figure(rows, "hieravid").axes[0]
    shown = {r.strategy: r for r in rows if r.strategy.startswith("hieravid")}
    order = ["hieravid", "hieravid[frame_level=false]", "hieravid[segment_level=false]"]
    bars = _horizontal_bars(ax)
    for y, name in enumerate(order):
        assert (y, *shown[name].average_ci) in [pytest.approx(b) for b in bars], name
    assert any("95% CI" in t.get_text() for legend in ax.figure.legends for t in legend.get_texts())


def _title(fig: Figure) -> str:
    return fig.get_suptitle()


def test_titles_name_model_benchmark_frames_and_items(ablated: list[dict[str, Any]]) -> None:
    for key, fig in _figures(ablated, LONG_CONTEXT).items():
        title = _title(fig).replace("\n", " ")
        assert "Qwen2-VL-7B-Instruct" in title and "snapshots" not in title, key
        assert "videomme" in title and "32 frames" in title and "n=6" in title, key
    # rows alone (a hand-made store): the figure still draws, its title still says n
    assert "n=6" in _title(accuracy_vs_retention(report_rows(ablated)))


def test_run_line_parts() -> None:
    rows = [SummaryRow("a", 0.3, "layer-average", 300), SummaryRow("b", 0.3, "layer-average", 150)]
    assert items_text(rows) == "n=150-300" and items_text(rows[:1]) == "n=300" and items_text([]) is None
    assert short_model("org/Qwen2-VL-7B/") == "Qwen2-VL-7B" and short_model("C:\\m\\llava") == "llava"
    assert (
        run_line(rows, {"model": "x/m", "benchmark": "mvbench", "frames": 16})
        == "m, mvbench, 16 frames, n=150-300"
    )
    assert run_line(rows, {"model": None, "benchmark": "mvbench", "frames": None}) == "mvbench, n=150-300"


def test_titles_and_captions_fit_inside_the_figure(ablated: list[dict[str, Any]]) -> None:
    context = {**LONG_CONTEXT, "benchmark": "a-benchmark-with-a-rather-long-name-" * 3}
    for key, fig in _figures(ablated, context).items():
        FigureCanvasAgg(fig).draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        page = fig.bbox
        texts = list(fig.texts) + [ax.title for ax in fig.axes if ax.get_visible()]
        assert fig.get_suptitle() in [t.get_text() for t in texts], key
        for text in texts:
            box = text.get_window_extent(renderer)
            assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, (
                key,
                text.get_text(),
            )
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
        for legend in legends:  # and the title never runs into a legend
            assert not legend.get_window_extent(renderer).overlaps(fig.texts[0].get_window_extent(renderer))


def test_small_n_is_said_in_every_accuracy_caption(ablated: list[dict[str, Any]]) -> None:
    figures = _figures(ablated)
    for key in ACCURACY:
        assert SMALL_N_NOTE in figures[key].get_supxlabel().replace("\n", " "), key
    many = {k: (a * 30, b * 30, f, t) for k, (a, b, f, t) in PLAN.items()}  # 180 items a row
    for key, fig in _figures(
        make_records({**many, **{k: (a * 30, b * 30, f, t) for k, (a, b, f, t) in VARIANTS.items()}})
    ).items():
        assert "intervals are wide" not in fig.get_supxlabel(), key


def _points(ax, names: set[str]) -> list[tuple[float, float]]:
    return [
        (float(x), float(y))
        for line in ax.get_lines()
        if line.get_label() in names
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)
    ]


def test_pareto_front_on_retention_and_cost_is_over_the_pruned_points() -> None:
    assert pareto_front([(1, 50), (2, 40), (2, 60), (3, 55), (4, 70), (0.5, 10)]) == [
        (0.5, 10),
        (1, 50),
        (2, 60),
        (4, 70),
    ]
    # the unpruned model beats every pruned point: it must still not be on the front
    best = {("none", 1.0, "layer-average"): ([True] * 4, [True] * 2, 1.0, 100.0)}
    rows = report_rows(make_records({**PLAN, **best}))
    for fig in (accuracy_vs_retention(rows), accuracy_vs_cost(rows, "flops"), accuracy_vs_cost(rows, "ttft")):
        ax = fig.axes[0]
        line = next(x for x in ax.get_lines() if x.get_label() == "Pareto front")
        assert line.get_drawstyle() == "steps-post"  # accuracy holds until the next cheaper-is-better step
        front = list(zip(line.get_xdata(), line.get_ydata(), strict=True))
        pruned = _points(ax, {"fastv", "visionzip"})
        flat = [c for point in pareto_front(pruned) for c in point]
        assert [c for point in front for c in point] == pytest.approx(flat), ax.get_xlabel()
        assert 100.0 not in [y for _, y in front]  # the unpruned model is no pruning point


def test_variants_keep_the_strategy_colour_with_a_marker_each_the_same_in_every_figure(
    ablated: list[dict[str, Any]],
) -> None:
    rows = report_rows(ablated)
    variants = ["hieravid[frame_level=false]", "hieravid[segment_level=false]"]
    base = strategy_style("hieravid")
    # in the ablation figure: the marker at each bar's value
    ax = ablation_figure(rows, "hieravid").axes[0]
    markers = {}
    for line in ax.get_lines():
        if line.get_marker() not in ("None", "|", None) and len(line.get_xdata()) == 1:
            y = round(float(line.get_ydata()[0]))
            markers[["hieravid", *variants][y]] = (line.get_marker(), line.get_markerfacecolor())
    assert markers["hieravid"][0] == base["marker"]
    assert len({m for m, _ in markers.values()}) == 3  # one marker each
    # the same variants in a headline figure, drawn where the strategy itself did not run
    alone = [r for r in rows if r.strategy != "hieravid"]
    lines = {x.get_label(): x for x in accuracy_vs_retention(alone).axes[0].get_lines()}
    for name in variants:
        assert lines[name].get_color() == base["color"], name
        assert lines[name].get_marker() == markers[name][0], name
    # and the plain strategies keep theirs
    assert lines["fastv"].get_color() == strategy_style("fastv")["color"]
    assert lines["fastv"].get_marker() == strategy_style("fastv")["marker"]
