"""Uncertainty of the table's numbers: bootstrap intervals and exact paired tests, from records alone.

Every accuracy is a mean of 0/1 outcomes (``correct``), one per item. Its 95% interval is a
percentile bootstrap: the items are resampled with replacement (:data:`RESAMPLES` times, a fixed
:data:`SEED`, so a table prints the same interval every time it is built) and the interval is the
2.5th to 97.5th percentile of the resampled accuracies. The headline number follows the benchmark's
rule (:class:`~prune_bench.benchmarks.headline.HeadlineRule`): a mean of task accuracies (tasks
weighing equally) resamples the items within each task (stratified), so the interval is the interval
of that statistic and not of the pooled accuracy; an all-questions rule resamples the pooled items.

For 0/1 outcomes, drawing ``n`` items with replacement and counting the correct ones *is* a binomial
draw ``Binomial(n, k/n)``; for paired outcomes, counting the items only A got right, only B got right
and the others is a multinomial draw. So the resamples are drawn as those counts, all at once with
numpy (``(resamples, tasks)`` numbers, whatever the number of items): the same distribution as
resampling item indices, without the ``resamples x items`` array (``tests/report/test_stats.py``
checks the two against each other).

Two configurations on the same items are compared paired (:func:`paired`): on the items both ran
(the intersection of item ids), the difference of their averages with a paired-bootstrap interval
(the shared items resampled together, within each task), and the exact McNemar test: under "neither is
better", each item exactly one of them got right is a fair coin, so the p-value is the two-sided
binomial tail of the discordant counts.

All functions are pure: records (or the outcomes they reduce to) in, numbers out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prune_bench.benchmarks.headline import MEAN_OF_TASKS, HeadlineRule

#: resamples of every bootstrap
RESAMPLES = 2000
#: seed of every bootstrap (one generator per interval: an interval never depends on the other rows)
SEED = 0
CONFIDENCE = 0.95
#: rows with fewer items than this get the table note that their intervals are wide
SMALL_N = 100
#: above this many discordant pairs the McNemar tail is summed in log space (exact integers below)
_EXACT_UP_TO = 10_000

#: item id -> (task, correct): what the statistics need of a row's records
Outcomes = Mapping[str, tuple[str, bool]]
Interval = tuple[float, float]


def outcomes(records: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, bool]]:
    """Item id -> (task, correct) of the records of one configuration (a later record of an item wins)."""
    return {str(r["item_id"]): (str(r["task"]), bool(r["correct"])) for r in records}


def by_task(items: Outcomes) -> dict[str, list[bool]]:
    """Task -> the outcomes of its items (tasks sorted, items in id order)."""
    out: dict[str, list[bool]] = defaultdict(list)
    for item in sorted(items):
        task, correct = items[item]
        out[task].append(correct)
    return dict(sorted(out.items()))


def _percentile_interval(draws: np.ndarray, confidence: float) -> Interval:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _check(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def stratified_accuracy_draws(
    strata: Sequence[Sequence[bool]], resamples: int = RESAMPLES, seed: int = SEED
) -> np.ndarray:
    """``resamples`` bootstrap replicates (in %) of the mean over strata of each stratum's accuracy,
    the items of every stratum resampled with replacement within it. Empty strata are left out."""
    sizes = np.array([len(s) for s in strata if len(s)], dtype=np.int64)
    if not sizes.size:
        return np.empty(0)
    right = np.array([sum(map(bool, s)) for s in strata if len(s)], dtype=np.int64)
    rng = np.random.default_rng(seed)
    counts = rng.binomial(sizes, right / sizes, size=(resamples, sizes.size))  # correct, per resample
    return 100.0 * (counts / sizes).mean(axis=1)


def accuracy_interval(
    correct: Sequence[bool], resamples: int = RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
) -> Interval | None:
    """95% percentile-bootstrap interval (in %) of the accuracy of ``correct`` (one outcome per item);
    ``None`` for no items, ``(p, p)`` when every outcome is the same."""
    return average_interval([correct], resamples, seed, confidence)


def average_interval(
    strata: Sequence[Sequence[bool]] | Mapping[str, Sequence[bool]],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Interval | None:
    """Interval (in %) of the mean of the strata's accuracies (tasks weighing equally), the items
    resampled within each stratum; ``None`` when there is no item at all."""
    _check(resamples, confidence)
    groups = list(strata.values()) if isinstance(strata, Mapping) else list(strata)
    draws = stratified_accuracy_draws(groups, resamples, seed)
    return _percentile_interval(draws, confidence) if draws.size else None


def headline_interval(
    by_task: Mapping[str, Sequence[bool]],
    rule: HeadlineRule = MEAN_OF_TASKS,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Interval | None:
    """Interval (in %) of ``rule.score(by_task)``: the items pooled and resampled together for an
    all-questions rule, resampled within each task for a mean of tasks (a task without items, or one
    of ``rule.all_tasks`` that is absent, adds its constant 0 to the mean); ``None`` without items."""
    _check(resamples, confidence)
    if rule.over == "items":
        pooled = [v for values in by_task.values() for v in values]
        return average_interval([pooled], resamples, seed, confidence)
    strata = [v for v in by_task.values() if len(v)]
    draws = stratified_accuracy_draws(strata, resamples, seed)
    if not draws.size:
        return None
    return _percentile_interval(draws * len(strata) / rule.denominator(list(by_task)), confidence)


def task_intervals(
    items: Outcomes, resamples: int = RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
) -> dict[str, Interval]:
    """Task -> the interval of its accuracy (each task bootstrapped on its own)."""
    return {
        task: interval
        for task, values in by_task(items).items()
        if (interval := accuracy_interval(values, resamples, seed, confidence)) is not None
    }


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value of ``only_a`` items that only A got right against ``only_b``
    that only B got right: ``min(1, 2 * P(X <= min(b, c)))`` for ``X ~ Binomial(b + c, 1/2)``;
    1.0 when no item tells them apart."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be non-negative, got {only_a} and {only_b}")
    n, m = only_a + only_b, min(only_a, only_b)
    if n == 0 or 2 * m == n:
        return 1.0
    if n <= _EXACT_UP_TO:  # exact: integers, one correctly rounded division at the end
        term = total = 1
        for k in range(m):
            term = term * (n - k) // (k + 1)  # C(n, k + 1)
            total += term
        return min(1.0, 2 * total / 2**n)
    j = np.arange(m, dtype=np.float64)  # log C(n, k) for k = 0..m by a running sum, then log-sum-exp
    log_comb = np.concatenate([[0.0], np.cumsum(np.log(n - j) - np.log(j + 1))])
    top = log_comb.max()
    log_tail = top + math.log(np.exp(log_comb - top).sum()) - n * math.log(2.0)
    return min(1.0, 2.0 * math.exp(log_tail))


def mcnemar_shared(a: Outcomes, b: Outcomes, task: str | None = None) -> float | None:
    """Exact McNemar p-value of A against B on the items both ran (only those of ``task`` when given);
    ``None`` when they share no such item."""
    shared = [i for i in a.keys() & b.keys() if task is None or a[i][0] == task]
    if not shared:
        return None
    only_a = sum(a[i][1] and not b[i][1] for i in shared)
    only_b = sum(b[i][1] and not a[i][1] for i in shared)
    return mcnemar_exact(only_a, only_b)


@dataclass(frozen=True)
class Paired:
    """A paired comparison of A against B on the items both ran (accuracies and ``delta`` in %)."""

    n: int  # shared items
    accuracy_a: float  # A's average over tasks, on the shared items
    accuracy_b: float
    delta: float  # accuracy_a - accuracy_b, in points
    ci: Interval  # paired-bootstrap interval of delta
    p: float  # exact McNemar
    only_a: int  # shared items only A got right
    only_b: int  # shared items only B got right
    tasks: int  # tasks among the shared items (1 under an all-questions rule)


def paired(
    a: Outcomes,
    b: Outcomes,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
    rule: HeadlineRule = MEAN_OF_TASKS,
) -> Paired | None:
    """A against B on the items both ran (``None`` when they share none): both headline numbers under
    ``rule`` (by default the mean over tasks), their difference with a paired-bootstrap interval
    (shared items resampled together: within each task for a mean of tasks, all pooled for an
    all-questions rule) and the exact McNemar p-value over all shared items. An item's task is A's."""
    _check(resamples, confidence)
    shared = a.keys() & b.keys()
    if not shared:
        return None
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # n, only a, only b, a, b
    for item in shared:
        task, right_a = a[item]
        task = "" if rule.over == "items" else task  # all questions: one stratum
        right_b = b[item][1]
        c = counts[task]
        c[0] += 1
        c[1] += right_a and not right_b
        c[2] += right_b and not right_a
        c[3] += right_a
        c[4] += right_b
    table = np.array([counts[t] for t in sorted(counts)], dtype=np.int64)
    sizes, only_a, only_b = table[:, 0], table[:, 1], table[:, 2]
    # the mean of tasks divides by every task the rule names (MLVU: absent ones count 0 for both)
    share = 1.0 if rule.over == "items" else sizes.size / rule.denominator(sorted(counts))
    acc_a = 100.0 * share * float(np.mean(table[:, 3] / sizes))
    acc_b = 100.0 * share * float(np.mean(table[:, 4] / sizes))
    probs = np.stack([only_a, only_b, sizes - only_a - only_b], axis=1) / sizes[:, None]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(sizes, probs, size=(resamples, sizes.size))  # (resamples, tasks, 3)
    deltas = 100.0 * share * ((draws[..., 0] - draws[..., 1]) / sizes).mean(axis=1)
    return Paired(
        n=int(sizes.sum()),
        accuracy_a=acc_a,
        accuracy_b=acc_b,
        delta=acc_a - acc_b,
        ci=_percentile_interval(deltas, confidence),
        p=mcnemar_exact(int(only_a.sum()), int(only_b.sum())),
        only_a=int(only_a.sum()),
        only_b=int(only_b.sum()),
        tasks=int(sizes.size),
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values of one family of tests, in the input order: the ``k``-th
    smallest is multiplied by ``m - k`` (``k`` from 0), capped at 1 and made monotone, so rejecting
    where the adjusted p < alpha keeps the family-wise error rate at alpha."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [1.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def format_p(p: float | None) -> str:
    """A p-value as a paper prints it: ``<0.001``, ``0.004``, ``0.03``, ``0.42``, ``1.00``."""
    if p is None or math.isnan(p):
        return "—"
    if p < 0.001:
        return "<0.001"
    if p < 0.01:
        return f"{p:.3f}"
    return f"{p:.2f}"
