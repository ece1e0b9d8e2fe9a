"""Read a results directory and shape its records for reporting.

:func:`prune_bench.runner.summary.summarize` does the aggregation; this module adds what a report
needs around it: reading a :class:`~prune_bench.runner.store.ResultStore` directory without creating
it, one reference (``none``) row however many runs wrote one, and the per-layer token curves.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prune_bench.benchmarks.headline import MEAN_OF_TASKS, HeadlineRule, rule_of
from prune_bench.core.compose import parse_part, split_specs
from prune_bench.core.plugins import registry
from prune_bench.errors import UserError
from prune_bench.runner.store import ResultStore
from prune_bench.runner.summary import SummaryRow, summarize

REFERENCE = "none"
REQUIRED = (
    "config_hash",
    "item_id",
    "task",
    "strategy",
    "keep",
    "unit",
    "correct",
    "retention",
    "flops",
    "timings_ms",
)


def load_records(directory: str | Path) -> list[dict[str, Any]]:
    """All records of a results directory (or of its ``results.jsonl``); a :class:`UserError` if none."""
    path = Path(directory)
    if path.is_file() and path.name == "results.jsonl":
        path = path.parent
    if not path.is_dir():
        raise UserError(f"results directory '{directory}' does not exist (pass the --out directory of a run)")
    if not (path / "results.jsonl").is_file():
        raise UserError(f"'{directory}' holds no results.jsonl (pass the --out directory of a run)")
    store = ResultStore(path, read_only=True)  # reading never repairs, locks or writes anything
    records = list(store.records())
    if not records:
        damaged = f" ({store.damage_summary()})" if store.damage else ""
        raise UserError(
            f"'{directory}/results.jsonl' holds no results yet{damaged} (run 'prune-bench compare' first)"
        )
    store.warn_damage()
    for n, r in enumerate(records, 1):
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise UserError(f"record {n} of '{directory}/results.jsonl' lacks {', '.join(missing)}")
    benchmarks = _benchmarks(store)
    for r in records:  # the benchmark a record answered, from its run's manifest (for its headline rule)
        if "benchmark" not in r and r["config_hash"] in benchmarks:
            r["benchmark"] = benchmarks[r["config_hash"]]
    return records


def _benchmarks(store: ResultStore) -> dict[str, str]:
    """Configuration hash -> benchmark name, from the manifests (empty when they are unreadable)."""
    try:
        runs = store.manifests()
    except UserError:
        return {}
    out: dict[str, str] = {}
    for run in runs:
        for config_hash, config in (run.get("configs") or {}).items():
            name = (config or {}).get("benchmark") or run.get("benchmark")
            if isinstance(name, str):
                out[config_hash] = name
    return out


def headline_rule(records: Iterable[dict[str, Any]]) -> HeadlineRule:
    """The headline rule of the benchmark the records answered (the registered benchmark's
    ``headline``); the mean of task accuracies when they name none, several, or one not installed."""
    names = {r.get("benchmark") for r in records} - {None}
    if len(names) != 1:
        return MEAN_OF_TASKS
    return rule_of(registry().benchmarks.get(str(names.pop())))


def run_context(directory: str | Path) -> dict[str, Any] | None:
    """Model, benchmark and frames the runs of a results directory used (from its manifest), or
    ``None`` when it has no readable manifest (a hand-made store)."""
    path = Path(directory)
    if path.is_file():
        path = path.parent
    store = ResultStore(path, read_only=True)
    try:
        runs = store.manifests()
    except UserError:
        return None  # unreadable: nothing to check against
    store.warn_damage()
    contexts = {
        json.dumps({k: run.get(k) for k in ("model", "benchmark", "frames")}, sort_keys=True) for run in runs
    }
    return json.loads(contexts.pop()) if len(contexts) == 1 else None


def load_results(directories: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The records of one or more results directories (a sweep's and an ablate's, say), which must
    come from one model, benchmark and frame count: otherwise their rows would mix in one table."""
    if not directories:
        raise UserError("name at least one results directory (the --out of compare, sweep or ablate)")
    for directory in directories:  # every path checked before any is read
        if not Path(directory).exists():
            raise UserError(
                f"results directory '{directory}' does not exist (pass the --out directory of a run)"
            )
    records: list[dict[str, Any]] = []
    first: tuple[str | Path, dict[str, Any]] | None = None
    for directory in directories:
        records += load_records(directory)
        context = run_context(directory)
        if context is None:
            continue
        if first is None:
            first = (directory, context)
        elif context != first[1]:
            differs = ", ".join(k for k in context if context[k] != first[1][k])
            raise UserError(
                f"'{first[0]}' and '{directory}' hold runs of different settings ({differs}); "
                "report them separately"
            )
    return records


def split_variant(strategy: str) -> tuple[str, str] | None:
    """``hieravid[segment_level=false]`` -> ``("hieravid", "segment_level=false")``; ``None`` for a
    plain strategy or a combination (``a+b``). Read with the CLI's own grammar
    (:func:`~prune_bench.core.compose.split_specs`, :func:`~prune_bench.core.compose.parse_part`)."""
    if len(split_specs(strategy)) != 1:
        return None
    try:
        name, _, tag = parse_part(strategy)
    except UserError:  # not a spec the CLI would have run (a hand-made record)
        return None
    return (name, tag) if tag else None


def prepare(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop duplicate records and fold every reference run into one ``none`` group.

    Each ``compare`` run adds its own unpruned reference under its budget unit, so a directory
    filled at several units holds the same ``none`` items several times; only the first is kept
    (per item), under the first unit seen, so the table has one reference row.
    """
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    ref_unit: str | None = None
    for r in records:
        if r["strategy"] == REFERENCE:
            key = (REFERENCE, r["item_id"])
            ref_unit = ref_unit or r["unit"]
            r = {**r, "unit": ref_unit}
        else:
            key = (r["config_hash"], r["item_id"])
        if key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out


def report_rows(records: Iterable[dict[str, Any]]) -> list[SummaryRow]:
    """One :class:`SummaryRow` per (strategy, keep, unit), reference first (see :func:`prepare`), its
    ``average`` the benchmark's headline number (:func:`headline_rule`)."""
    kept = prepare(records)
    return summarize(kept, rule=headline_rule(kept))


def reference_row(rows: Iterable[SummaryRow]) -> SummaryRow | None:
    """The unpruned reference row, if the results have one."""
    return next((r for r in rows if r.strategy == REFERENCE), None)


def label(row: SummaryRow | dict[str, Any], with_unit: bool = False) -> str:
    """``strategy@keep`` (``none`` alone), with the budget unit when asked."""
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    if get("strategy") == REFERENCE:
        return REFERENCE
    text = f"{get('strategy')}@{get('keep'):g}"
    return f"{text} ({get('unit')})" if with_unit else text


def mixed_units(rows: Iterable[SummaryRow]) -> bool:
    """Whether the pruned rows were budgeted in more than one unit (then tables and plots name it)."""
    return len({r.unit for r in rows if r.strategy != REFERENCE}) > 1


def tokens_per_layer(records: Iterable[dict[str, Any]]) -> dict[tuple[str, float, str], list[float]]:
    """Mean visual tokens each LLM layer saw, per (strategy, keep, unit), from ``visual_per_layer``.

    Layer ``i`` is averaged over the records that reach it (all of them, for one model).
    """
    sums: dict[tuple[str, float, str], list[float]] = defaultdict(list)
    counts: dict[tuple[str, float, str], list[int]] = defaultdict(list)
    for r in prepare(records):
        per_layer = r.get("visual_per_layer") or []
        key = (r["strategy"], r["keep"], r["unit"])
        s, c = sums[key], counts[key]
        for i, v in enumerate(per_layer):
            if i == len(s):
                s.append(0.0)
                c.append(0)
            s[i] += float(v)
            c[i] += 1
    curves = {k: [s / c for s, c in zip(sums[k], counts[k], strict=True)] for k in sums if sums[k]}
    return dict(sorted(curves.items(), key=lambda kv: (kv[0][0] != REFERENCE, kv[0])))
