from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prune_bench.report.data import report_rows, tokens_per_layer
from prune_bench.report.plots import accuracy_vs_flops, accuracy_vs_keep, tokens_per_layer_figure, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_write_plots_makes_non_empty_png_files(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    paths = write_plots(records, tmp_path / "figs", flops="paper")
    assert sorted(p.name for p in paths) == [
        "accuracy_vs_flops_paper.png",
        "accuracy_vs_keep.png",
        "tokens_per_layer.png",
    ]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_pdf_on_request(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    paths = write_plots(records, tmp_path, pdf=True)
    pdfs = [p for p in paths if p.suffix == ".pdf"]
    assert len(pdfs) == 3 and all(p.read_bytes().startswith(b"%PDF") for p in pdfs)


def test_accuracy_vs_keep_lines(records: list[dict[str, Any]]) -> None:
    ax = accuracy_vs_keep(report_rows(records)).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"none (unpruned)", "fastv", "visionzip"}
    assert lines["none (unpruned)"].get_linestyle() == "--"
    assert list(lines["none (unpruned)"].get_ydata()) == pytest.approx([62.5, 62.5])
    assert list(lines["visionzip"].get_xdata()) == [0.25, 0.5]
    assert list(lines["visionzip"].get_ydata()) == pytest.approx([75.0, 50.0])


def test_accuracy_vs_flops_uses_the_named_convention(records: list[dict[str, Any]]) -> None:
    ax = accuracy_vs_flops(report_rows(records), "exact").axes[0]
    fastv = next(line for line in ax.get_lines() if line.get_label() == "fastv")
    assert list(fastv.get_xdata()) == pytest.approx([0.4, 0.6])
    assert "exact" in ax.get_xlabel()


def test_tokens_per_layer_means(records: list[dict[str, Any]]) -> None:
    curves = tokens_per_layer(records)
    assert list(curves)[0][0] == "none"
    assert curves["fastv", 0.25, "layer-average"] == pytest.approx([100.0, 25.0, 25.0, 25.0])
    ax = tokens_per_layer_figure(records).axes[0]
    assert {line.get_label() for line in ax.get_lines()} == {
        "none",
        "fastv@0.5",
        "fastv@0.25",
        "visionzip@0.5",
        "visionzip@0.25",
    }


def test_empty_rows_draw_without_warnings(tmp_path: Path) -> None:
    # filterwarnings=error: an empty legend or layout trouble would fail here
    paths = write_plots([], tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)


def _bars(ax) -> list[tuple[float, float, float]]:
    """(x, low, high) of every vertical error bar of the axes."""
    from matplotlib.collections import LineCollection

    out = []
    for coll in ax.collections:
        if isinstance(coll, LineCollection):
            out += [(float(s[0][0]), float(s[0][1]), float(s[1][1])) for s in coll.get_segments()]
    return out


def test_accuracy_points_carry_their_95_percent_intervals(records: list[dict[str, Any]]) -> None:
    from prune_bench.report.plots import accuracy_vs_cost, accuracy_vs_retention

    rows = report_rows(records)
    none = next(r for r in rows if r.strategy == "none")
    pruned = [r for r in rows if r.strategy != "none"]
    for ax, x_of in (
        (accuracy_vs_keep(rows).axes[0], lambda r: r.keep),
        (accuracy_vs_flops(rows).axes[0], lambda r: r.flops_ratio["exact"]),
        (accuracy_vs_retention(rows).axes[0], lambda r: 100 * r.retention["layer_average"]),
        (accuracy_vs_cost(rows, "flops").axes[0], lambda r: r.flops["exact"]),
        (accuracy_vs_cost(rows, "ttft").axes[0], lambda r: r.prefill_ms),
    ):
        assert "95% CI" in ax.get_ylabel()
        bars = _bars(ax)
        for r in pruned:  # a bar at the point's x from its interval's low to its high
            want = (x_of(r), *r.average_ci)
            assert any(got == pytest.approx(want) for got in bars), (ax.get_title(), r.strategy, r.keep)
        # the reference's own interval: a light band behind the data
        bands = [p.get_bbox() for p in ax.patches]
        assert any((b.y0, b.y1) == pytest.approx(none.average_ci) for b in bands), ax.get_title()
