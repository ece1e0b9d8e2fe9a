"""A benchmark's headline rule: how its per-item outcomes become the one number a paper prints.

Benchmarks differ, and lmms-eval follows each one's own rule: Video-MME, EgoSchema, NExT-QA and
LongVideoBench report the accuracy over all questions; MVBench the mean of its 20 task accuracies,
each over the questions with a non-empty answer; MLVU the mean over its 7 task types, a type without
questions counting 0. The synthetic benchmark (and any benchmark that does not say) reports the mean
of its task accuracies, tasks weighing equally, as papers average benchmarks.

:class:`HeadlineRule` says which; :meth:`HeadlineRule.score` computes it from outcomes grouped by task,
and :func:`prune_bench.report.stats` bootstraps the same statistic, so every table, figure and console
line shows one number under one rule (``SummaryRow.average``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class HeadlineRule:
    """How per-task outcomes become the headline number (in %)."""

    #: "items": accuracy over all questions pooled; "tasks": the mean of the task accuracies
    over: Literal["items", "tasks"] = "tasks"
    #: with ``over="tasks"``: the tasks the mean divides by, an absent one counting 0 (MLVU's rule);
    #: empty: the tasks present
    all_tasks: tuple[str, ...] = ()
    #: leave out questions with an empty generated answer (MVBench's ``answered`` count); a task whose
    #: every answer is empty still counts, at 0
    skip_unanswered: bool = False
    #: the rule in words, for table notes and figure captions
    text: str = "mean of task accuracies"

    def denominator(self, tasks: Sequence[str]) -> int:
        """How many tasks the mean divides by, given the tasks present (``over="tasks"``)."""
        return len(set(tasks) | set(self.all_tasks))

    def score(self, by_task: Mapping[str, Sequence[bool]]) -> float:
        """The headline number of outcomes grouped by task (a task may hold no outcome: it counts 0)."""
        if self.over == "items":
            pooled = [bool(v) for values in by_task.values() for v in values]
            return 100.0 * sum(pooled) / len(pooled) if pooled else 0.0
        if not by_task and not self.all_tasks:
            return 0.0
        total = sum(100.0 * sum(map(bool, v)) / len(v) for v in by_task.values() if len(v))
        return total / self.denominator(list(by_task))

    def counts(self, record: Mapping[str, Any]) -> bool:
        """Whether a record's outcome enters the headline (an empty generated answer may not)."""
        if not self.skip_unanswered:
            return True
        response = record.get("response")
        return response is None or bool(str(response).strip())


#: the rule of a benchmark that names none (the synthetic one): the mean of task accuracies
MEAN_OF_TASKS = HeadlineRule()
#: accuracy over all questions
ALL_QUESTIONS = HeadlineRule(over="items", text="accuracy over all questions")


def rule_of(benchmark: Any) -> HeadlineRule:
    """The headline rule a benchmark (instance, class or factory) declares; the mean of task
    accuracies for one that declares none."""
    rule = getattr(benchmark, "headline", None)
    return rule if isinstance(rule, HeadlineRule) else MEAN_OF_TASKS
