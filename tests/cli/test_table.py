"""``prune-bench table``: per-task columns and the average, each as a percentage of the unpruned
model, the best value per column within a budget marked, retention and FLOPs columns."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from prune_bench.errors import UserError
from prune_bench.report import stats
from prune_bench.report.data import load_results, report_rows


@pytest.fixture(scope="module")
def rows(swept: Path):
    return report_rows(load_results([swept]))


def test_markdown_marks_the_best_average_per_budget_and_gives_percentages(swept: Path, rows, run_cli) -> None:
    result = run_cli("table", str(swept))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    heads = [h.strip() for h in lines[0].strip("|").split("|")]
    tasks = sorted({t for r in rows for t in r.accuracy})
    assert heads[2] == "n" and heads[3 : 3 + len(tasks)] == tasks and heads[3 + len(tasks)] == "avg"
    assert {"ret. layer-avg", "rel. FLOPs (exact)"} <= set(heads) and any(
        h.startswith("prefill ") for h in heads
    )
    full = next(r for r in rows if r.strategy == "none")
    cells = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        values = [c.strip() for c in line.strip("|").split("|")]
        cells[values[0], float(values[1])] = dict(zip(heads, values, strict=True))
    for r in rows:
        avg = cells[r.strategy, r.keep]["avg"]
        if r.strategy == "none":
            assert avg == f"{r.average:.1f}"
            continue
        m = re.fullmatch(r"(\*\*)?([\d.]+)(\*\*)?(?: \(([\d.]+)%\))?", avg)
        assert m, avg
        assert float(m.group(2)) == pytest.approx(r.average, abs=0.05)
        if full.average:  # a percentage of an unpruned 0% is not printed
            assert float(m.group(4)) == pytest.approx(100 * r.average / full.average, abs=0.05)
        else:
            assert m.group(4) is None
        others = [o for o in rows if o.strategy not in ("none", r.strategy) and o.keep == r.keep]
        best = all(round(r.average, 1) > round(o.average, 1) for o in others)
        # bold: the best of its budget and significantly better than each other row there
        significant = all(stats.mcnemar_shared(r.outcomes, o.outcomes) < 0.05 for o in others)
        assert bool(m.group(1)) == bool(others and best and significant), (r.strategy, r.keep)


def test_csv_has_percent_columns_and_names_the_best(swept: Path, rows, run_cli) -> None:
    result = run_cli("table", str(swept), "--format", "csv", "--flops", "paper")
    assert result.exit_code == 0, result.output
    parsed = list(csv.DictReader(io.StringIO(result.stdout)))
    assert parsed[0]["strategy"] == "none" and parsed[0]["best"] == ""
    full = float(parsed[0]["average"])
    for line in parsed[1:]:
        pct = line["average_pct_full"]
        assert (
            float(pct) == pytest.approx(100 * float(line["average"]) / full, abs=0.01) if full else pct == ""
        )
        peers = [float(o["average"]) for o in parsed[1:] if o["keep"] == line["keep"]]
        assert ("average" in line["best"].split(";")) == (float(line["average"]) == max(peers))
        assert 0 < float(line["flops_paper"]) < 1


def test_latex_to_a_file(swept: Path, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "t" / "table.tex"
    result = run_cli("table", str(swept), "--format", "latex", "-o", str(out))
    assert result.exit_code == 0, result.output
    tex = out.read_text()
    assert r"\toprule" in tex and r"\textbf{" in tex and r"{\scriptsize(" in tex


def test_several_directories_make_one_table(swept: Path, tmp_path: Path, run_cli) -> None:
    lines = (swept / "results.jsonl").read_text().splitlines()
    parts = [tmp_path / "a", tmp_path / "b"]
    for part, chunk in zip(parts, (lines[: len(lines) // 2], lines[len(lines) // 2 :]), strict=True):
        part.mkdir()
        (part / "results.jsonl").write_text("\n".join(chunk) + "\n")
        shutil.copy(swept / "manifest.json", part / "manifest.json")
    whole = run_cli("table", str(swept), "--format", "csv")
    split = run_cli("table", *map(str, parts), "--format", "csv")
    assert split.exit_code == 0, split.output
    assert split.stdout == whole.stdout


def test_missing_directory_is_one_line(tmp_path: Path, run_cli) -> None:
    result = run_cli("table", str(tmp_path / "nowhere"))
    assert isinstance(result.exception, UserError)
    assert "does not exist" in str(result.exception) and "\n" not in str(result.exception)
    json.dumps(str(result.exception))


def test_intervals_and_paired_tests_in_every_format(swept: Path, rows, run_cli) -> None:
    md = run_cli("table", str(swept))
    assert md.exit_code == 0, md.output
    heads = [h.strip() for h in md.output.splitlines()[0].strip("|").split("|")]
    assert heads[heads.index("avg") + 1] == "95% CI" and heads[-1] == "p vs none"
    assert "n < 100" in md.output and "differences within them are noise" in md.output  # 6 items
    parsed = list(csv.DictReader(io.StringIO(run_cli("table", str(swept), "--format", "csv").stdout)))
    assert len(parsed) == len(rows)
    for line in parsed:
        r = next(r for r in rows if (r.strategy, r.keep) == (line["strategy"], float(line["keep"])))
        assert float(line["average_ci_low"]) <= float(line["average"]) <= float(line["average_ci_high"])
        if r.strategy == "none":
            assert line["p_vs_none"] == ""
            continue
        assert 0 < float(line["p_vs_none"]) <= 1
        assert float(line["p_vs_none"]) == pytest.approx(r.vs_none.p, rel=1e-5)
        assert float(line["delta_vs_none_ci_low"]) <= float(line["delta_vs_none_paired"])
        assert float(line["delta_vs_none_paired"]) <= float(line["delta_vs_none_ci_high"])
        assert int(float(line["n_vs_none"])) == r.items  # every run here covers the same items
    tex = run_cli("table", str(swept), "--format", "latex").stdout
    assert "95\\% CI" in tex and "p vs none" in tex


def test_versus_compares_two_strategies_paired(swept: Path, rows, run_cli) -> None:
    result = run_cli("table", str(swept), "--versus", "random", "uniform", "--format", "csv")
    assert result.exit_code == 0, result.output
    parsed = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [float(r["keep"]) for r in parsed] == [0.4, 0.2]
    for line in parsed:
        a = next(r for r in rows if r.strategy == "random" and r.keep == float(line["keep"]))
        b = next(r for r in rows if r.strategy == "uniform" and r.keep == float(line["keep"]))
        assert float(line["delta"]) == pytest.approx(a.average - b.average, abs=1e-3)
        assert float(line["delta_ci_low"]) <= float(line["delta"]) <= float(line["delta_ci_high"])
        assert 0 < float(line["p"]) <= 1
    md = run_cli("table", str(swept), "--versus", "random", "uniform")
    assert md.exit_code == 0 and md.output.startswith("| keep | n | random | uniform | Δ random − uniform |")
    wrong = run_cli("table", str(swept), "--versus", "random", "fastv")
    assert isinstance(wrong.exception, UserError) and "no row 'fastv'" in str(wrong.exception)
    assert "\n" not in str(wrong.exception)
