"""One headline rule everywhere: the benchmark's own (lmms-eval's) number in the table's avg, its
interval and its paired test; bold only where a best is significant; LaTeX that fits a page."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from prune_bench.benchmarks.headline import ALL_QUESTIONS, MEAN_OF_TASKS, HeadlineRule
from prune_bench.benchmarks.published import PUBLISHED
from prune_bench.report import stats
from prune_bench.report.data import headline_rule, load_records, report_rows
from prune_bench.report.tables import best_cells, build_table, render
from prune_bench.runner.store import ResultStore
from prune_bench.runner.summary import summarize


def _record(strategy: str, item: str, task: str, correct: bool, **extra: Any) -> dict[str, Any]:
    return {
        "config_hash": f"h-{strategy}",
        "item_id": item,
        "task": task,
        "strategy": strategy,
        "keep": 1.0 if strategy == "none" else 0.3,
        "unit": "layer-average",
        "correct": correct,
        "retention": {"input": 1.0, "layer_average": 1.0, "decode": 1.0},
        "flops": {"exact": 1.0, "exact_full": 1.0, "paper": 1.0, "paper_full": 1.0},
        "timings_ms": {"prefill": 1.0, "pruning": 0.0},
        **extra,
    }


def _uneven(strategy: str = "none", **extra: Any) -> list[dict[str, Any]]:
    """Task 'short': 3 of 3 right; task 'long': 0 of 1 right. Pooled 75%, mean of tasks 50%."""
    outcomes = [("short", True), ("short", True), ("short", True), ("long", False)]
    return [_record(strategy, f"q{i}", t, c, **extra) for i, (t, c) in enumerate(outcomes)]


def test_the_rules_differ_where_tasks_differ_in_size() -> None:
    by_task = {"short": [True, True, True], "long": [False]}
    assert ALL_QUESTIONS.score(by_task) == pytest.approx(75.0)
    assert MEAN_OF_TASKS.score(by_task) == pytest.approx(50.0)
    mlvu = HeadlineRule(over="tasks", all_tasks=("short", "long", "absent", "also"))
    assert mlvu.score(by_task) == pytest.approx(25.0)  # absent task types count 0, as lmms-eval's MLVU


def test_each_published_benchmark_declares_lmms_eval_s_rule() -> None:
    assert PUBLISHED["videomme"].headline.over == "items"
    assert PUBLISHED["egoschema_subset"].headline.over == "items"
    assert PUBLISHED["mvbench"].headline.over == "tasks" and PUBLISHED["mvbench"].headline.skip_unanswered
    assert PUBLISHED["mlvu_dev"].headline.all_tasks == PUBLISHED["mlvu_dev"].tasks


def test_the_table_average_is_the_benchmark_s_headline() -> None:
    records = _uneven(benchmark="videomme") + _uneven("fastv", benchmark="videomme")
    assert headline_rule(records) == PUBLISHED["videomme"].headline
    rows = report_rows(records)
    assert [r.average for r in rows] == pytest.approx([75.0, 75.0])
    assert rows[0].accuracy == pytest.approx({"long": 0.0, "short": 100.0})
    md = render(rows, "md")
    assert "avg = accuracy over all questions" in md and "within each task" not in md
    # the same records without a benchmark name: the mean of task accuracies (the synthetic rule)
    plain = report_rows([{k: v for k, v in r.items() if k != "benchmark"} for r in records])
    assert [r.average for r in plain] == pytest.approx([50.0, 50.0])
    assert "avg = mean of task accuracies" in render(plain, "md")


def test_the_table_agrees_with_lmms_eval_s_score_on_each_rule() -> None:
    recs = _uneven(response="A") + [_record("none", "q9", "long", False, response=" ")]
    for name in ("videomme", "mvbench", "mlvu_dev"):
        bench = PUBLISHED[name]
        renamed = [{**r, "benchmark": name} for r in recs]
        (row,) = report_rows(renamed)
        assert row.average == pytest.approx(object.__new__(bench).score(renamed).overall)
    # MVBench leaves the empty answer out: 'long' holds 1 counted item, and a task of empty answers counts 0
    (mv,) = summarize(recs, rule=PUBLISHED["mvbench"].headline)
    assert mv.task_items == {"long": 1, "short": 3}
    only_empty = [_record("none", "e", "blank", False, response="")] + _uneven(response="A")
    (mv,) = summarize(only_empty, rule=PUBLISHED["mvbench"].headline)
    assert mv.accuracy["blank"] == 0.0 and mv.average == pytest.approx((0 + 100 + 0) / 3)


def test_the_interval_follows_the_rule(rng_outcomes: list[bool]) -> None:
    by_task = {"a": rng_outcomes[:150], "b": rng_outcomes[150:]}
    pooled = stats.headline_interval(by_task, ALL_QUESTIONS)
    assert pooled == stats.accuracy_interval(rng_outcomes)
    assert stats.headline_interval(by_task, MEAN_OF_TASKS) == stats.average_interval(by_task)
    wide = HeadlineRule(over="tasks", all_tasks=("a", "b", "c", "d"))
    half = stats.headline_interval(by_task, wide)
    full = stats.average_interval(by_task)
    assert half == pytest.approx((full[0] / 2, full[1] / 2))  # two constant-0 tasks halve the mean
    assert stats.headline_interval({}, ALL_QUESTIONS) is None


@pytest.fixture
def rng_outcomes() -> list[bool]:
    import random

    gen = random.Random(3)
    return [gen.random() < 0.6 for _ in range(200)]


def test_the_paired_test_follows_the_rule() -> None:
    a = {f"s{i}": ("short", True) for i in range(3)} | {"l0": ("long", True)}
    b = {f"s{i}": ("short", True) for i in range(3)} | {"l0": ("long", False)}
    items, tasks = stats.paired(a, b, rule=ALL_QUESTIONS), stats.paired(a, b)
    assert items.delta == pytest.approx(25.0) and items.tasks == 1
    assert tasks.delta == pytest.approx(50.0) and tasks.tasks == 2
    assert items.p == tasks.p == 1.0  # McNemar counts items whatever the rule


def _two_methods(n: int, right_a: int, right_b: int) -> list[dict[str, Any]]:
    records = [_record("none", f"i{i}", "t", True) for i in range(n)]
    for name, right in (("fastv", right_a), ("visionzip", right_b)):
        records += [_record(name, f"i{i}", "t", i < right) for i in range(n)]
    return records


def test_bold_only_where_the_best_is_significant() -> None:
    clear = build_table(report_rows(_two_methods(200, 150, 100)))
    close = build_table(report_rows(_two_methods(20, 11, 10)))
    avg = next(j for j, c in enumerate(clear.columns) if c.csv == "average")
    fastv = next(i for i, row in enumerate(clear.rows) if row[0] == "fastv")
    assert (fastv, avg) in best_cells(clear)  # 150 vs 100 of 200: McNemar p < 0.001
    assert not any(j == avg for _, j in best_cells(close))  # 11 vs 10 of 20: noise, not marked
    assert any(j == avg for _, j in best_cells(close, significant=False))
    flops = next(j for j, c in enumerate(close.columns) if c.csv == "flops_exact")
    assert any(j == flops for _, j in best_cells(close))  # a measured cost needs no test
    tex = render(report_rows(_two_methods(20, 11, 10)), "latex")
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption{"))
    assert "significantly better than every other method" in caption
    parsed = list(
        csv.DictReader(
            io.StringIO(render(report_rows(_two_methods(200, 150, 100)), "csv", paper_layout=True))
        )
    )
    by = {r["strategy"]: r for r in parsed}
    assert "average" in by["fastv"]["best"].split(";") and "average" in by["fastv"]["best_significant"].split(
        ";"
    )


def test_latex_is_a_float_that_fits_a_page_and_the_full_set_is_on_request() -> None:
    tasks = [f"task{i}" for i in range(8)]
    records = [
        _record(s, f"{t}/{i}", t, (i + len(s)) % 3 > 0)
        for s in ("none", "fastv")
        for t in tasks
        for i in range(3)
    ]
    rows = report_rows(records)
    tex = render(rows, "latex", paper_layout=True)
    assert r"\begin{table}" in tex and r"\resizebox{\linewidth}{!}{%" in tex and r"\caption{" in tex
    assert r"\toprule" in tex and tex.rstrip().endswith(r"\end{table}")
    header = next(line for line in tex.splitlines() if line.startswith("strategy"))
    assert "task0" not in header and "ret. input" not in header and "avg" in header  # 8 tasks: headline only
    full = render(rows, "latex", paper_layout=True, columns_set="all")
    header = next(line for line in full.splitlines() if line.startswith("strategy"))
    assert "task0" in header and "ret. input" in header
    assert "task0" in render(rows, "md").splitlines()[0]  # markdown prints every column by default


def test_load_records_names_each_record_s_benchmark(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "run")
    store.write_manifest({"benchmark": "videomme", "configs": {"h-none": {"benchmark": "videomme"}}})
    for r in _uneven():
        store.append(r)
    store.close()
    records = load_records(tmp_path / "run")
    assert {r["benchmark"] for r in records} == {"videomme"}
    assert report_rows(records)[0].average == pytest.approx(75.0)
    assert (
        json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0]).get("benchmark") is None
    )
