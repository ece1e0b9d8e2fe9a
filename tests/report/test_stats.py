"""Bootstrap intervals and exact McNemar tests: reproducible, sensible at the edges, hand-checkable."""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np
import pytest

from prune_bench.report import stats
from prune_bench.report.data import report_rows
from prune_bench.report.stats import (
    accuracy_interval,
    average_interval,
    format_p,
    mcnemar_exact,
    outcomes,
    paired,
    task_intervals,
)
from prune_bench.runner.summary import summarize


def _binomial_p(b: int, c: int) -> float:
    """The textbook two-sided exact McNemar p, written out."""
    n = b + c
    return min(1.0, 2 * sum(comb(n, k) for k in range(min(b, c) + 1)) / 2**n)


@pytest.mark.parametrize(("b", "c"), [(1, 9), (9, 1), (0, 5), (3, 3), (2, 7), (10, 30), (0, 1)])
def test_mcnemar_matches_the_binomial_tail(b: int, c: int) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(_binomial_p(b, c), rel=1e-12)


def test_mcnemar_hand_computed_values() -> None:
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 2**10) == pytest.approx(0.02148, abs=1e-5)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(0, 0) == 1.0  # nothing tells them apart
    assert mcnemar_exact(4, 4) == 1.0
    assert mcnemar_exact(0, 1) == 1.0  # 2 * 1/2, capped
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_mcnemar_log_space_agrees_with_the_exact_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [(40, 70), (400, 520), (3000, 3300)]
    exact = [mcnemar_exact(b, c) for b, c in cases]
    monkeypatch.setattr(stats, "_EXACT_UP_TO", 0)
    for (b, c), want in zip(cases, exact, strict=True):
        assert mcnemar_exact(b, c) == pytest.approx(want, rel=1e-9)
    assert 0.0 <= mcnemar_exact(20_000, 21_000) < 1e-3  # large counts: no overflow, a tiny p


def test_interval_is_reproducible_and_contains_the_estimate() -> None:
    rng = np.random.default_rng(1)
    correct = list(rng.random(150) < 0.6)
    first, again = accuracy_interval(correct), accuracy_interval(correct)
    assert first == again  # seeded: the same interval every time
    estimate = 100 * sum(correct) / len(correct)
    assert first is not None and first[0] < estimate < first[1]
    assert 5 < first[1] - first[0] < 25  # about +-8 points at n = 150
    draws = stats.stratified_accuracy_draws([correct], seed=0)
    assert np.array_equal(draws, stats.stratified_accuracy_draws([correct], seed=0))
    assert not np.array_equal(draws, stats.stratified_accuracy_draws([correct], seed=7))  # the seed fixes it
    narrower = accuracy_interval(correct, confidence=0.5)
    assert narrower is not None and first[0] < narrower[0] < narrower[1] < first[1]


def test_degenerate_samples() -> None:
    assert accuracy_interval([]) is None
    assert average_interval({}) is None
    assert average_interval({"a": [], "b": []}) is None
    assert accuracy_interval([True] * 7) == (100.0, 100.0)
    assert accuracy_interval([False] * 7) == (0.0, 0.0)
    assert accuracy_interval([True]) == (100.0, 100.0)
    # constant within each task: within-task resampling cannot move the average
    assert average_interval({"a": [True] * 4, "b": [False] * 2}) == (50.0, 50.0)
    with pytest.raises(ValueError):
        accuracy_interval([True], resamples=0)
    with pytest.raises(ValueError):
        accuracy_interval([True], confidence=1.0)


def test_counts_are_the_distribution_of_resampled_items() -> None:
    """Drawing the number correct as a binomial is resampling the items: same quantiles as the
    explicit index bootstrap (within Monte Carlo noise), for one task and stratified over two."""
    rng = np.random.default_rng(3)
    a, b = rng.random(80) < 0.7, rng.random(30) < 0.4
    many = 40_000
    draws = stats.stratified_accuracy_draws([list(a), list(b)], resamples=many, seed=5)
    explicit_rng = np.random.default_rng(11)
    by_index = 50.0 * (
        a[explicit_rng.integers(0, a.size, (many, a.size))].mean(axis=1)
        + b[explicit_rng.integers(0, b.size, (many, b.size))].mean(axis=1)
    )
    for q in (0.025, 0.25, 0.5, 0.75, 0.975):
        assert np.quantile(draws, q) == pytest.approx(np.quantile(by_index, q), abs=1.0)
    assert draws.mean() == pytest.approx(50.0 * (a.mean() + b.mean()), abs=0.2)


def test_stratified_average_interval_is_the_interval_of_the_mean_over_tasks() -> None:
    # task a: 90 of 100 right, task b: 1 of 4 right. Pooled accuracy is 87.5; the average is 57.5.
    tasks = {"a": [True] * 90 + [False] * 10, "b": [True] + [False] * 3}
    low, high = average_interval(tasks)  # type: ignore[misc]
    assert low < 57.5 < high
    assert high < 87.5  # not the pooled accuracy's interval
    assert average_interval(tasks) == average_interval(list(tasks.values()))


def _items(prefix: str, task: str, values: list[bool]) -> dict[str, tuple[str, bool]]:
    return {f"{prefix}{i}": (task, v) for i, v in enumerate(values)}


def test_paired_uses_only_the_shared_items() -> None:
    # 10 shared items: A right on 9, B on 1 (b = 0 only-B, c = 8 only-A), task t
    a = _items("x", "t", [True] * 9 + [False])
    b = _items("x", "t", [True] + [False] * 9)
    test = paired(a, b)
    assert test is not None and test.n == 10 and (test.only_a, test.only_b) == (8, 0)
    assert test.delta == pytest.approx(80.0)
    assert test.p == pytest.approx(2 / 2**8)
    assert test.ci[0] <= 80.0 <= test.ci[1]
    # items only one of them ran change nothing, however they went
    a_more = {**a, **_items("only-a", "t", [False] * 50)}
    b_more = {**b, **_items("only-b", "u", [True] * 50)}
    assert paired(a_more, b_more) == test
    assert paired(a, {}) is None and paired({}, {}) is None


def test_paired_edges_and_direction() -> None:
    a = _items("x", "t", [True, False, True, True])
    same = paired(a, a)
    assert same is not None and same.delta == 0.0 and same.ci == (0.0, 0.0) and same.p == 1.0
    b = _items("x", "t", [False, False, True, False])
    ab, ba = paired(a, b), paired(b, a)
    assert ab is not None and ba is not None
    assert ab.delta == pytest.approx(-ba.delta) and ab.p == ba.p
    assert (ab.only_a, ab.only_b) == (ba.only_b, ba.only_a)
    assert paired(a, b) == ab  # seeded


def test_paired_average_is_stratified_by_task() -> None:
    # task t (8 items): A +50 points; task u (2 items): A -50 points -> average delta 0, pooled +30
    a = {**_items("t", "t", [True] * 8), **_items("u", "u", [False, False])}
    b = {**_items("t", "t", [True] * 4 + [False] * 4), **_items("u", "u", [True, False])}
    test = paired(a, b)
    assert test is not None and test.tasks == 2
    assert test.accuracy_a == pytest.approx(50.0) and test.accuracy_b == pytest.approx(50.0)
    assert test.delta == pytest.approx(0.0)
    assert test.ci[0] <= 0.0 <= test.ci[1]
    assert test.p == pytest.approx(mcnemar_exact(4, 1))  # McNemar pools the discordant items


def test_format_p() -> None:
    assert [format_p(p) for p in (0.0, 0.0004, 0.001, 0.0042, 0.0312, 0.4, 1.0)] == [
        "<0.001",
        "<0.001",
        "0.001",
        "0.004",
        "0.03",
        "0.40",
        "1.00",
    ]
    assert format_p(None) == "—" and format_p(float("nan")) == "—"


def test_outcomes_and_task_intervals(records: list[dict[str, Any]]) -> None:
    none = [r for r in records if r["strategy"] == "none"]
    items = outcomes(none)
    assert items["a0"] == ("a", True) and items["b1"] == ("b", False) and len(items) == 6
    intervals = task_intervals(items)
    assert set(intervals) == {"a", "b"}
    assert intervals["a"][0] <= 75.0 <= intervals["a"][1]


def test_summarize_carries_the_statistics(records: list[dict[str, Any]]) -> None:
    rows = report_rows(records)
    assert report_rows(records) == rows  # deterministic, intervals included
    none = next(r for r in rows if r.strategy == "none")
    assert none.vs_none is None and none.task_items == {"a": 4, "b": 2}
    assert none.average_ci is not None and none.average_ci[0] <= 62.5 <= none.average_ci[1]
    for r in rows:
        for task, (low, high) in r.accuracy_ci.items():
            assert low <= r.accuracy[task] <= high, (r.strategy, task)
        assert r.average_ci is not None and r.average_ci[0] <= r.average <= r.average_ci[1]
        if r.strategy != "none":
            assert r.vs_none is not None and r.vs_none.n == 6
            assert r.vs_none.delta == pytest.approx(r.average - none.average)
            assert r.vs_none.ci[0] <= r.vs_none.delta <= r.vs_none.ci[1]
    fastv = next(r for r in rows if r.strategy == "fastv" and r.keep == 0.25)
    # none right & fastv wrong on a1, a2, b0; the reverse on none: b = 3, c = 0
    assert (fastv.vs_none.only_a, fastv.vs_none.only_b) == (0, 3)  # type: ignore[union-attr]
    assert fastv.vs_none.p == pytest.approx(0.25)  # type: ignore[union-attr]


def test_summarize_pairs_on_shared_items_only(records: list[dict[str, Any]]) -> None:
    fewer = [r for r in records if not (r["strategy"] == "fastv" and r["item_id"] in ("a0", "b0"))]
    rows = summarize(fewer)
    fastv = next(r for r in rows if r.strategy == "fastv" and r.keep == 0.5)
    assert fastv.items == 4 and fastv.vs_none is not None and fastv.vs_none.n == 4
    no_reference = summarize([r for r in records if r["strategy"] != "none"])
    assert all(r.vs_none is None for r in no_reference)


def _coverage(draw, truth: float, trials: int, seed: int, interval) -> float:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    hits = 0
    for t in range(trials):
        low, high = interval(draw(rng), t)
        hits += low <= truth <= high
    return hits / trials


def test_the_interval_covers_a_known_proportion_at_its_nominal_rate() -> None:
    # 400 simulated benchmarks of 200 items with a true accuracy of 60%: a 95% interval should hold
    # 60 in about 95% of them (binomial standard error of the rate over 400 trials: 1.1 points)
    rate = _coverage(
        lambda rng: list(rng.random(200) < 0.6),
        60.0,
        trials=400,
        seed=11,
        interval=lambda sample, t: accuracy_interval(sample, resamples=1000, seed=t),
    )
    assert 0.92 <= rate <= 0.98, rate


def test_the_stratified_interval_covers_the_mean_over_tasks_at_its_nominal_rate() -> None:
    # two tasks of unequal size and accuracy (40 items at 90%, 160 at 50%): the mean of tasks is 70
    rate = _coverage(
        lambda rng: {"a": list(rng.random(40) < 0.9), "b": list(rng.random(160) < 0.5)},
        70.0,
        trials=400,
        seed=12,
        interval=lambda sample, t: average_interval(sample, resamples=1000, seed=t),
    )
    assert 0.91 <= rate <= 0.98, rate


def test_mcnemar_rejects_a_true_null_at_most_at_its_level() -> None:
    # two methods equally good, disagreeing on 30% of 300 items: exact McNemar is conservative
    rng = np.random.default_rng(13)
    rejections = 0
    for _ in range(1000):
        discordant = rng.binomial(300, 0.3)
        only_a = rng.binomial(discordant, 0.5)
        rejections += mcnemar_exact(int(only_a), int(discordant - only_a)) < 0.05
    assert rejections / 1000 <= 0.05 + 0.02  # the level, plus three standard errors of the rate


def test_holm_adjusts_in_the_input_order_and_stays_monotone() -> None:
    from prune_bench.report.stats import holm

    # sorted 0.01, 0.02, 0.04, 0.30 -> x4, x3, x2, x1 = 0.04, 0.06, 0.08, 0.30
    assert holm([0.04, 0.01, 0.30, 0.02]) == pytest.approx([0.08, 0.04, 0.30, 0.06])
    assert holm([0.5, 0.5]) == [1.0, 1.0]  # capped at 1
    assert holm([0.03, 0.03, 0.03]) == pytest.approx([0.09, 0.09, 0.09])  # monotone through ties
    assert holm([]) == []
