from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from prune_bench.errors import UserError
from prune_bench.report.data import report_rows
from prune_bench.report.tables import best_cells, build_table, latex_escape, render, render_versus


def test_rows_average_tasks_equally_and_delta_vs_none(records: list[dict[str, Any]]) -> None:
    table = build_table(report_rows(records))
    heads = [c.header for c in table.columns]
    assert heads[:5] == ["strategy", "keep", "n", "a", "b"]
    shown = [table.columns[j].header for j in table.shown()]
    assert shown[5:7] == ["avg", "95% CI"]
    assert shown[-3:] == ["rel. FLOPs (exact)", "Δ avg vs none", "p vs none"]
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
    rows = report_rows(records)
    lines = render(rows, "md").splitlines()
    none_ci = "[{:.1f}, {:.1f}]".format(*rows[0].average_ci)
    assert lines[2].startswith(f"| none | 1 | 6 | 75.0 | 50.0 | 62.5 | {none_ci} |")
    assert lines[2].endswith("| — | — |")  # no change vs itself, no test against itself
    assert "| fastv | 0.25 | 6 | 25.0 | 0.0 | 12.5 | [" in render(rows, "md")
    assert lines[5].startswith("| fastv | 0.25 |") and lines[5].endswith("| -50.0 | 0.25 |")
    assert len({line.count("|") for line in lines[:7]}) == 1


def test_latex_bolds_the_best_pruned_value_per_budget(records: list[dict[str, Any]]) -> None:
    tex = render(report_rows(records), "latex", columns_set="all", alpha=None)  # best, significant or not
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
    assert vz50.split(" & ")[6] == "[50.0, 50.0]"  # the interval beside the average, never bold
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
        "average_ci_low",
        "average_ci_high",
        "retention_input",
        "retention_layer_average",
        "retention_decode",
        "flops_paper",
        "delta_vs_none",
        "p_vs_none",
        "n_a",
        "acc_a_ci_low",
        "acc_a_ci_high",
        "n_b",
        "acc_b_ci_low",
        "acc_b_ci_high",
        "n_vs_none",
        "delta_vs_none_paired",
        "delta_vs_none_ci_low",
        "delta_vs_none_ci_high",
    ]
    vz = next(r for r in parsed if r["strategy"] == "visionzip" and float(r["keep"]) == 0.25)
    assert float(vz["average"]) == pytest.approx(75.0)
    assert float(vz["delta_vs_none"]) == pytest.approx(12.5)
    assert float(vz["average_ci_low"]) <= 75.0 <= float(vz["average_ci_high"])
    assert float(vz["n_vs_none"]) == 6 and float(vz["delta_vs_none_paired"]) == pytest.approx(12.5)
    assert float(vz["delta_vs_none_ci_low"]) <= 12.5 <= float(vz["delta_vs_none_ci_high"])
    assert float(vz["n_a"]) == 4 and float(vz["n_b"]) == 2
    assert float(vz["acc_b_ci_low"]) == float(vz["acc_b_ci_high"]) == 100.0  # 2 of 2: constant
    assert 0 < float(vz["p_vs_none"]) <= 1
    assert parsed[0]["p_vs_none"] == parsed[0]["n_vs_none"] == parsed[0]["delta_vs_none_ci_low"] == ""
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


def _with_items(records: list[dict[str, Any]], copies: int) -> list[dict[str, Any]]:
    """The records with every item repeated ``copies`` times under new ids (same outcomes)."""
    return [{**r, "item_id": f"{r['item_id']}-{k}"} for r in records for k in range(copies)]


def test_small_rows_are_said_to_be_noise_and_large_ones_are_not(records: list[dict[str, Any]]) -> None:
    small = render(report_rows(records), "md")
    assert "n < 100 (here as few as 6) have wide intervals" in small
    assert "McNemar" in small and "bootstrap" in small
    large = render(report_rows(_with_items(records, 20)), "md")  # 120 items a row
    assert "n < 100" not in large and "McNemar" in large


def test_p_values_as_papers_print_them(records: list[dict[str, Any]]) -> None:
    rows = report_rows(_with_items(records, 30))  # 180 items: fastv@0.25 is far below none
    md = render(rows, "md")
    fastv = next(line for line in md.splitlines() if line.startswith("| fastv | 0.25 |"))
    assert fastv.endswith("| <0.001 |")
    tex = render(rows, "latex")
    assert "$<$0.001" in next(line for line in tex.splitlines() if line.startswith("fastv & 0.25"))
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    p = float(next(r for r in parsed if r["strategy"] == "fastv" and r["keep"] == "0.25")["p_vs_none"])
    assert 0 < p < 1e-6  # raw, not rounded


def test_intervals_are_built_once_and_every_format_shows_them(records: list[dict[str, Any]]) -> None:
    rows = report_rows(records)
    vz = next(r for r in rows if r.strategy == "visionzip" and r.keep == 0.25)
    low, high = vz.average_ci  # type: ignore[misc]
    assert f"[{low:.1f}, {high:.1f}]" in render(rows, "md")
    assert f"[{low:.1f}, {high:.1f}]" in render(rows, "latex")
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    line = next(r for r in parsed if r["strategy"] == "visionzip" and r["keep"] == "0.25")
    assert float(line["average_ci_low"]) == pytest.approx(low, abs=1e-4)
    assert float(line["average_ci_high"]) == pytest.approx(high, abs=1e-4)


def test_versus_pairs_two_strategies_budget_by_budget(records: list[dict[str, Any]]) -> None:
    rows = report_rows(records)
    parsed = list(csv.DictReader(io.StringIO(render_versus(rows, "visionzip", "fastv", "csv"))))
    assert [float(r["keep"]) for r in parsed] == [0.5, 0.25]
    at25 = parsed[1]
    assert float(at25["n"]) == 6
    assert float(at25["average_a"]) == pytest.approx(75.0) and float(at25["average_b"]) == pytest.approx(12.5)
    assert float(at25["delta"]) == pytest.approx(62.5)
    assert float(at25["delta_ci_low"]) <= 62.5 <= float(at25["delta_ci_high"])
    # visionzip right and fastv wrong on a1, b0, b1; the reverse never: McNemar 2 * 1/8
    assert (float(at25["only_a"]), float(at25["only_b"])) == (3, 0)
    assert float(at25["p"]) == pytest.approx(0.25)
    md = render_versus(rows, "visionzip", "fastv")
    assert md.splitlines()[0] == "| keep | n | visionzip | fastv | Δ visionzip − fastv | 95% CI | p |"
    assert "| 0.25 | 6 | 75.0 | 12.5 | +62.5 | [" in md and "McNemar" in md
    tex = render_versus(rows, "visionzip", "fastv", "latex")
    assert "visionzip $-$ fastv" in tex and "−" not in tex
    against_none = list(csv.DictReader(io.StringIO(render_versus(rows, "fastv", "none", "csv"))))
    assert [float(r["delta"]) for r in against_none] == pytest.approx([-12.5, -50.0])


def test_versus_names_what_is_there(records: list[dict[str, Any]]) -> None:
    rows = report_rows(records)
    with pytest.raises(UserError, match="no row 'hieravid'.*fastv, none, visionzip"):
        render_versus(rows, "hieravid", "fastv")
    with pytest.raises(UserError, match="twice"):
        render_versus(rows, "fastv", "fastv")
    apart = [r for r in records if not (r["strategy"] == "fastv" and r["keep"] == 0.25)]
    apart = [r for r in apart if not (r["strategy"] == "visionzip" and r["keep"] == 0.5)]
    with pytest.raises(UserError, match="share no budget"):
        render_versus(report_rows(apart), "fastv", "visionzip")
