"""Aggregate result records into one row per configuration: accuracy per task and efficiency.

A row is one configuration (one ``config_hash``: strategy with every option, budget, mode, model,
benchmark, frames), counted once per item: a record repeated for the same (configuration, item), by
two runs or a re-run, counts once (the last one written). Two configurations that share a label (the
same spec under another seed, say) stay two rows, told apart by their hash.

Each row also carries the uncertainty of its accuracies (:mod:`prune_bench.report.stats`, computed
here once so every table format and figure shows the same numbers): the items per task, a 95%
bootstrap interval of each task's accuracy and of the average (items resampled within each task), and
for a pruned row its paired comparison with the unpruned ``none`` row on the items both ran (the
difference of the averages with its paired-bootstrap interval, the exact McNemar p-value)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import mean, median
from typing import Any

from prune_bench.benchmarks.headline import MEAN_OF_TASKS, HeadlineRule
from prune_bench.core.flops import CONVENTIONS
from prune_bench.report import stats
from prune_bench.report.stats import Interval, Paired

REFERENCE = "none"


@dataclass
class SummaryRow:
    strategy: str
    keep: float
    unit: str
    items: int
    accuracy: dict[str, float] = field(default_factory=dict)  # per task, 0..100
    average: float = 0.0
    retention: dict[str, float] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)  # mean prefill FLOPs per item
    flops_ratio: dict[str, float] = field(default_factory=dict)  # vs the same items unpruned
    prefill_ms: float = 0.0
    pruning_ms: float = 0.0
    config_hash: str = ""
    #: the first LLM layer from which no item kept a visual token (None: every layer saw some)
    first_empty_layer: int | None = None
    task_items: dict[str, int] = field(default_factory=dict)  # n per task
    accuracy_ci: dict[str, Interval] = field(default_factory=dict)  # 95% bootstrap, per task, 0..100
    average_ci: Interval | None = None  # 95% bootstrap of ``average``, items resampled within tasks
    #: paired comparison with the ``none`` row on the items both ran (None: the reference itself, or
    #: no reference sharing an item); ``vs_none.delta`` is this row minus ``none``
    vs_none: Paired | None = None
    #: how answers were scored: "generate" (parsed as lmms-eval parses them) or "logits"
    scoring: str = "logits"
    #: item id -> (task, correct), what the statistics are computed from (for further paired tests)
    outcomes: dict[str, tuple[str, bool]] = field(default_factory=dict, repr=False, compare=False)
    #: the benchmark's rule behind ``average`` (:class:`~prune_bench.benchmarks.headline.HeadlineRule`)
    rule: HeadlineRule = field(default=MEAN_OF_TASKS, repr=False, compare=False)

    @property
    def headline_rule(self) -> str:
        """``average``'s rule in words ("mean of task accuracies", "accuracy over all questions")."""
        return self.rule.text


def summarize(
    records: Iterable[dict[str, Any]],
    hashes: set[str] | None = None,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
    rule: HeadlineRule = MEAN_OF_TASKS,
) -> list[SummaryRow]:
    """One row per configuration of ``records`` (only those of ``hashes`` when given), its ``average``
    the benchmark's headline number under ``rule`` (by default the mean of task accuracies), with its
    bootstrap intervals (``resamples`` resamples, seeded by ``seed``) and, for a pruned row, its paired
    test against the ``none`` row (the one budgeted in the same unit when there are several)."""
    latest: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # hash -> item -> record
    for r in records:
        if hashes is not None and r["config_hash"] not in hashes:
            continue
        latest[r["config_hash"]][r["item_id"]] = r
    labels = defaultdict(set)
    scorings = defaultdict(set)
    for config_hash, by_item in latest.items():
        first = next(iter(by_item.values()))
        labels[(first["strategy"], first["keep"], first["unit"])].add(config_hash)
        scorings[(first["strategy"], first["keep"], first["unit"])].add(first.get("scoring", "logits"))
    rows = []
    references: list[SummaryRow] = []
    for config_hash, by_item in latest.items():
        recs = list(by_item.values())
        strategy, keep, unit = recs[0]["strategy"], recs[0]["keep"], recs[0]["unit"]
        scoring = recs[0].get("scoring", "logits")  # records before scorings were recorded: logits
        is_reference = strategy == REFERENCE
        if len(scorings[(strategy, keep, unit)]) > 1:  # scored both ways: the label says which
            strategy = f"{strategy} [{scoring}]"
        if len(labels[(recs[0]["strategy"], keep, unit)]) > len(scorings[(recs[0]["strategy"], keep, unit)]):
            strategy = f"{strategy} ({config_hash[:8]})"
        items = stats.outcomes(r for r in recs if rule.counts(r))
        # a task whose every answer left the count (an empty generated answer) still counts, at 0
        by_task = {**{r["task"]: [] for r in recs}, **stats.by_task(items)}
        by_task = dict(sorted(by_task.items()))
        acc = {t: 100.0 * sum(v) / len(v) if v else 0.0 for t, v in by_task.items()}
        rows.append(
            SummaryRow(
                strategy=strategy,
                keep=keep,
                unit=unit,
                items=len(recs),
                config_hash=config_hash,
                first_empty_layer=_first_empty_layer(recs),
                accuracy=acc,
                average=rule.score(by_task),
                retention={
                    k: mean(r["retention"][k] for r in recs) for k in ("input", "layer_average", "decode")
                },
                flops={c: mean(r["flops"][c] for r in recs) for c in CONVENTIONS},
                flops_ratio={
                    c: sum(r["flops"][c] for r in recs) / sum(r["flops"][f"{c}_full"] for r in recs)
                    for c in CONVENTIONS
                },
                prefill_ms=median(r["timings_ms"].get("prefill", 0.0) for r in recs),
                pruning_ms=median(r["timings_ms"].get("pruning", 0.0) for r in recs),
                task_items={t: len(v) for t, v in by_task.items()},
                accuracy_ci=stats.task_intervals(items, resamples, seed),
                average_ci=stats.headline_interval(by_task, rule, resamples, seed),
                outcomes=items,
                scoring=scoring,
                rule=rule,
            )
        )
        if is_reference:
            references.append(rows[-1])
    for row in rows:
        if references and not any(row is ref for ref in references):
            ref = next(
                (r for r in references if (r.unit, r.scoring) == (row.unit, row.scoring)),
                next((r for r in references if r.unit == row.unit), references[0]),
            )
            row.vs_none = stats.paired(row.outcomes, ref.outcomes, resamples, seed, rule=rule)
    rows.sort(key=lambda r: (r.strategy != "none", r.strategy, r.keep))
    return rows


def _first_empty_layer(records: list[dict[str, Any]]) -> int | None:
    per_layer = [r["visual_per_layer"] for r in records if r.get("visual_per_layer")]
    if not per_layer or len({len(p) for p in per_layer}) != 1:
        return None
    for layer, counts in enumerate(zip(*per_layer, strict=True)):
        if not any(counts):
            return layer
    return None


#: how far (relative) an achieved budget may be from the requested one before the run says so
BUDGET_TOLERANCE = 0.05


def budget_warnings(rows: Iterable[SummaryRow]) -> list[str]:
    """One line per row whose achieved budget, in the unit it asked for, is more than 5% (relative)
    off the requested keep, or that kept no visual token at all from some layer on."""
    lines = []
    for r in rows:
        if r.strategy == "none":
            continue
        unit = r.unit
        achieved = r.flops_ratio.get("exact") if unit == "flops" else r.retention.get(
            "input" if unit == "input" else "layer_average"
        )
        if achieved is not None and r.keep and abs(achieved - r.keep) / r.keep > BUDGET_TOLERANCE:
            lines.append(
                f"warning: {r.strategy} asked keep={r.keep:g} ({unit}) and achieved {achieved:.3f} "
                f"({100 * (achieved - r.keep) / r.keep:+.0f}%); compare rows by their achieved retention"
            )
        if r.first_empty_layer is not None:
            lines.append(
                f"warning: {r.strategy} at keep={r.keep:g} kept no visual token from LLM layer "
                f"{r.first_empty_layer} on: those layers saw only text"
            )
    return lines


def repeated_frame_warnings(records: Iterable[dict[str, Any]], hashes: set[str], frames: int) -> list[str]:
    """One line when some items' videos have fewer frames than were asked for: their sampled indices
    repeat (lmms-eval's uniform sampling does the same), so those items saw fewer distinct frames."""
    short: dict[str, int] = {}
    for r in records:
        if r.get("config_hash") not in hashes or not isinstance(r.get("frames"), dict):
            continue
        indices = r["frames"].get("indices") or []
        distinct = len(set(indices))
        if len(indices) == frames and distinct < frames:
            short[str(r.get("item_id"))] = distinct
    if not short:
        return []
    first, distinct = next(iter(short.items()))
    return [
        f"warning: {len(short)} item(s) have videos shorter than --frames {frames} (first: {first}, "
        f"{distinct} distinct frames); their frames repeat, as lmms-eval's sampling does; pass --frames "
        f"{min(short.values())} to give every item distinct frames"
    ]
