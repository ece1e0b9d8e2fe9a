"""``prune-bench plot``: every figure as PNG and PDF, one colour per strategy in all of them,
legends beside the data, Pareto fronts that are fronts, ablation bars labelled as declared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from prune_bench.cli.plot import ablation_labels
from prune_bench.errors import UserError
from prune_bench.report.ablation_plot import ablation_figure
from prune_bench.report.data import load_results, report_rows, run_context
from prune_bench.report.plots import (
    accuracy_vs_cost,
    accuracy_vs_retention,
    main_rows,
    pareto_front,
    tokens_per_layer_panels,
)
from prune_bench.report.styles import REFERENCE_STYLE, STRATEGY_STYLES, strategy_style

STEMS = [
    "accuracy_vs_retention",
    "accuracy_vs_flops_exact",
    "accuracy_vs_ttft",
    "tokens_per_layer",
    "ablation_hieravid",
]


def test_plot_writes_every_figure_as_png_and_vector_pdf(swept: Path, tmp_path: Path, run_cli) -> None:
    result = run_cli("plot", str(swept), "--out", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output
    for stem in STEMS:
        png, pdf = tmp_path / "figs" / f"{stem}.png", tmp_path / "figs" / f"{stem}.pdf"
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000, stem
        assert pdf.read_bytes().startswith(b"%PDF"), stem
    assert sorted(p.stem for p in (tmp_path / "figs").glob("*.png")) == sorted(STEMS)


def test_report_plots_are_plots_figures(swept: Path, tmp_path: Path, run_cli) -> None:
    result = run_cli("plot", str(swept), "--out", str(tmp_path / "plot"), "--no-pdf")
    assert result.exit_code == 0, result.output
    result = run_cli("report", str(swept), "--plots", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    for stem in STEMS:  # the same figures from the same inputs, byte for byte
        plotted = (tmp_path / "plot" / f"{stem}.png").read_bytes()
        assert plotted == (tmp_path / "report" / f"{stem}.png").read_bytes(), stem
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(f"{s}.png" for s in STEMS)


@pytest.fixture(scope="module")
def figures(swept: Path) -> dict[str, Figure]:
    records = load_results([swept])
    rows = report_rows(records)
    headline = main_rows(rows)
    context = run_context(swept)
    return {
        "retention": accuracy_vs_retention(headline, context),
        "flops": accuracy_vs_cost(headline, "flops", context=context),
        "ttft": accuracy_vs_cost(headline, "ttft", context=context),
        "layers": tokens_per_layer_panels(records, rows, context),
        "ablation": ablation_figure(rows, "hieravid", ablation_labels(), context),
    }


def test_titles_name_the_run_from_its_manifest(swept: Path, figures: dict[str, Figure]) -> None:
    context = run_context(swept)
    assert context is not None and context["model"] and context["frames"] == 16
    for key, fig in figures.items():
        title = fig.get_suptitle().replace("\n", " ")
        assert str(context["model"]).rstrip("/").rsplit("/", 1)[-1] in title, key
        assert f"{context['benchmark']}" in title and "16 frames" in title and "n=6" in title, key


def test_each_strategy_has_one_colour_in_every_figure(figures: dict[str, Figure]) -> None:
    for name in ("random", "uniform"):
        colour = strategy_style(name)["color"]
        for key in ("retention", "flops", "ttft"):
            line = next(x for x in figures[key].axes[0].get_lines() if x.get_label() == name)
            assert line.get_color() == colour, (key, name)
        panel = next(ax for ax in figures["layers"].axes if ax.get_title() == name)
        assert {x.get_color() for x in panel.get_lines()} == {colour, REFERENCE_STYLE["color"]}
    hieravid = to_rgb(strategy_style("hieravid")["color"])
    assert figures["ablation"].axes[0].patches[0].get_facecolor()[:3] == pytest.approx(hieravid)
    colours = [c for c, _ in STRATEGY_STYLES.values()]
    assert len(set(colours)) == len(colours)


def test_legends_sit_beside_the_axes(figures: dict[str, Figure]) -> None:
    for key, fig in figures.items():
        FigureCanvasAgg(fig).draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
        assert legends, key
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                if ax.get_visible():
                    assert not box.overlaps(ax.get_window_extent(renderer)), key


def test_pareto_front_is_the_non_dominated_points(figures: dict[str, Figure]) -> None:
    assert pareto_front([(1, 50), (2, 40), (2, 60), (3, 55), (4, 70), (0.5, 10)]) == [
        (0.5, 10),
        (1, 50),
        (2, 60),
        (4, 70),
    ]
    for key in ("retention", "flops", "ttft"):
        ax = figures[key].axes[0]
        front_line = next(x for x in ax.get_lines() if x.get_label() == "Pareto front")
        front = list(zip(front_line.get_xdata(), front_line.get_ydata(), strict=True))
        points = [
            (float(x), float(y))
            for line in ax.get_lines()
            if line.get_label() in ("random", "uniform")
            for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)
        ]
        assert points, key
        for fx, fy in front:  # nothing is cheaper and at least as accurate
            assert not any(x < fx and y >= fy for x, y in points), key
        for x, y in points:  # everything else is matched by a cheaper-or-equal front point
            assert any(fx <= x and fy >= y for fx, fy in front), key


def test_ablation_bars_carry_the_declared_labels_and_the_variants_accuracy(swept: Path, figures) -> None:
    rows = report_rows(load_results([swept]))
    ax = figures["ablation"].axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    declared = ablation_labels()
    assert labels[0] == "hieravid (default)"
    assert set(labels[1:]) == {declared[s] for s in declared if s.startswith("hieravid[")}
    by_label = {
        declared.get(r.strategy, "hieravid (default)"): r.average
        for r in rows
        if r.strategy.startswith("hieravid")
    }
    bars = [p for p in ax.patches if p.get_height() == pytest.approx(0.7)]
    for text, bar in zip(labels, bars, strict=True):  # each bar ends at its accuracy
        assert bar.get_x() + bar.get_width() == pytest.approx(by_label[text])


def test_missing_or_mixed_results_are_one_line(swept: Path, tmp_path: Path, run_cli) -> None:
    result = run_cli("plot", str(swept), str(tmp_path / "nowhere"))
    assert isinstance(result.exception, UserError) and "does not exist" in str(result.exception)
    other = tmp_path / "other"
    shutil.copytree(swept, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(
        json.dumps([{**run, "frames": 2 * run["frames"]} for run in manifest])
    )
    result = run_cli("plot", str(swept), str(other), "--out", str(tmp_path / "figs"))
    assert isinstance(result.exception, UserError), result.output
    assert "different settings (frames)" in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "figs").exists()
