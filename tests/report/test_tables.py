from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from prune_bench.report.data import report_rows
from prune_bench.report.tables import best_cells, build_table, latex_escape, render


def test_rows_average_tasks_equally_and_delta_vs_none(records: list[dict[str, Any]]) -> None:
    table = build_table(report_rows(records))
    heads = [c.header for c in table.columns]
    assert heads[:5] == ["strategy", "keep", "n", "a", "b"]
    assert heads[-2:] == ["rel. FLOPs (exact)", "Δ avg vs none"]
    by_label = {(row[0], row[1]): dict(zip(heads, row, strict=True)) for row in table.rows}
    assert table.rows[0][0] == "none"
    assert by_label["none", 1.0]["avg"] == pytest.approx(62.5)
    assert by_label["none", 1.0]["Δ avg vs none"] == pytest.approx(0.0)
    assert by_label["visionzip", 0.25]["avg"] == pytest.approx(75.0)
    assert by_label["visionzip", 0.25]["Δ avg vs none"] == pytest.approx(12.5)
    assert by_label["fastv", 0.25]["avg"] == pytest.approx(12.5)
    assert by_label["fastv", 0.25]["Δ avg vs none"] == pytest.approx(-50.0)
    assert by_label["fastv", 0.5]["rel. FLOPs (exact)"] == pytest.approx(0.6)


def test_flops_convention_is_named_in_the_header(records: list[dict[str, Any]]) -> None:
    md = render(report_rows(records), "md", flops="paper")
    assert "rel. FLOPs (paper)" in md.splitlines()[0]
    assert "4nd^2" in md


def test_markdown_shape(records: list[dict[str, Any]]) -> None:
    lines = render(report_rows(records), "md").splitlines()
    assert lines[2].startswith("| none | 1 | 6 | 75.0 | 50.0 | 62.5 |")
    assert lines[2].endswith("| — |")  # no change vs itself
    assert "| fastv | 0.25 | 6 | 25.0 | 0.0 | 12.5 |" in render(report_rows(records), "md")
    assert lines[5].startswith("| fastv | 0.25 |") and lines[5].endswith("| -50.0 |")
    assert len({line.count("|") for line in lines[:7]}) == 1


def test_latex_bolds_the_best_pruned_value_per_budget(records: list[dict[str, Any]]) -> None:
    tex = render(report_rows(records), "latex")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    rows = [line for line in tex.splitlines() if line.endswith(r"\\")]
    none = next(line for line in rows if line.startswith("none"))
    assert r"\textbf" not in none  # the reference is not a competitor
    assert rows.index(none) == 1  # first after the header
    vz25 = next(line for line in rows if line.startswith("visionzip & 0.25"))
    # keep 0.25: visionzip wins task a (50 vs 25), b, average, FLOPs (0.300 < 0.400) and delta
    for cell in (
        r"\textbf{50.0}",
        r"\textbf{100.0}",
        r"\textbf{75.0}",
        r"\textbf{0.300}",
        r"\textbf{$+$12.5}",
    ):
        assert cell in vz25
    fv25 = next(line for line in rows if line.startswith("fastv & 0.25"))
    assert r"\textbf" not in fv25
    # keep 0.5: visionzip wins a (100 vs 50), fastv wins b (50 vs 0), both average 50: ties all bold
    fv50 = next(line for line in rows if line.startswith("fastv & 0.5"))
    vz50 = next(line for line in rows if line.startswith("visionzip & 0.5"))
    assert vz50.split(" & ")[3] == r"\textbf{100.0}" and fv50.split(" & ")[3] == "50.0"
    assert fv50.split(" & ")[4] == r"\textbf{50.0}" and vz50.split(" & ")[4] == "0.0"
    assert fv50.split(" & ")[5] == r"\textbf{50.0}" and vz50.split(" & ")[5] == r"\textbf{50.0}"
    assert r"$\Delta$" in tex and "Δ" not in tex
    assert tex.count(r"\midrule") == 3  # under the header, after the reference, between the two budgets


def test_latex_escapes_names() -> None:
    assert latex_escape("fast_v+dpp 50%") == r"fast\_v+dpp 50\%"


def test_csv_parses_back(records: list[dict[str, Any]]) -> None:
    parsed = list(csv.DictReader(io.StringIO(render(report_rows(records), "csv", flops="paper"))))
    assert [r["strategy"] for r in parsed] == ["none", "fastv", "visionzip", "fastv", "visionzip"]
    assert [float(r["keep"]) for r in parsed] == [1.0, 0.5, 0.5, 0.25, 0.25]
    assert list(parsed[0]) == [
        "strategy",
        "keep",
        "n",
        "acc_a",
        "acc_b",
        "average",
        "retention_input",
        "retention_layer_average",
        "retention_decode",
        "flops_paper",
        "delta_vs_none",
    ]
    vz = next(r for r in parsed if r["strategy"] == "visionzip" and float(r["keep"]) == 0.25)
    assert float(vz["average"]) == pytest.approx(75.0)
    assert float(vz["delta_vs_none"]) == pytest.approx(12.5)
    assert float(vz["flops_paper"]) == pytest.approx(0.3)
    assert float(vz["retention_layer_average"]) == pytest.approx(0.25)


def test_missing_task_and_no_reference(records: list[dict[str, Any]]) -> None:
    subset = [
        r for r in records if r["strategy"] != "none" and not (r["strategy"] == "fastv" and r["task"] == "b")
    ]
    parsed = list(csv.DictReader(io.StringIO(render(report_rows(subset), "csv"))))
    fv = next(r for r in parsed if r["strategy"] == "fastv")
    assert fv["acc_b"] == "" and fv["delta_vs_none"] == ""
    assert "—" in render(report_rows(subset), "md")
    assert best_cells(build_table(report_rows(subset)))


def test_reference_rows_of_several_units_fold_into_one(records: list[dict[str, Any]]) -> None:
    again = [{**r, "unit": "input", "config_hash": r["config_hash"] + "-input"} for r in records]
    rows = report_rows(records + again)
    assert [r.strategy for r in rows].count("none") == 1
    assert next(r for r in rows if r.strategy == "none").items == 6
    table = build_table(rows)
    assert [c.header for c in table.columns][2] == "unit"  # pruned rows now differ by unit


def test_unknown_format_or_convention(records: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="format"):
        render(report_rows(records), "html")
    with pytest.raises(ValueError, match="flops"):
        render(report_rows(records), "md", flops="macs")
