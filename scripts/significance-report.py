#!/usr/bin/env python
"""Which differences in a results directory are significant: every pruned row against the unpruned
model, and one strategy (``--against``, default hieravid) against every other at each budget.

Paired on the items both ran (``prune_bench.report.stats.paired``, under the benchmark's headline
rule): the difference in points with its 95% paired-bootstrap interval and the exact McNemar p-value,
plus the Holm-adjusted p within each family of comparisons (one family per budget and kind), so that
running twenty comparisons does not make one of them significant by chance.

Usage: python scripts/significance-report.py RESULTS_DIR [--against hieravid] [--alpha 0.05] [-o FILE]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from prune_bench.report import stats
from prune_bench.report.data import REFERENCE, load_results, report_rows, run_context
from prune_bench.runner.summary import SummaryRow


def _budget(row: SummaryRow) -> tuple[float, str]:
    return (row.keep, row.unit)


def _lines(pairs: list[tuple[str, stats.Paired]], alpha: float) -> list[str]:
    adjusted = stats.holm([p.p for _, p in pairs])
    out = []
    for (name, p), holm_p in zip(pairs, adjusted, strict=True):
        mark = "**yes**" if holm_p < alpha else "no"
        out.append(
            f"| {name} | {p.n} | {p.delta:+.1f} | [{p.ci[0]:+.1f}, {p.ci[1]:+.1f}] | {stats.format_p(p.p)} | "
            f"{stats.format_p(holm_p)} | {mark} |"
        )
    return out


def report(directory: Path, against: str, alpha: float) -> str:
    rows = report_rows(load_results([directory]))
    ref = next((r for r in rows if r.strategy == REFERENCE), None)
    context = run_context(directory) or {}
    head = ", ".join(f"{k} {context[k]}" for k in ("model", "benchmark", "frames") if context.get(k))
    rule = rows[0].headline_rule if rows else "mean of task accuracies"
    text = [
        f"# Significant differences ({head})",
        "",
        f"Headline: {rule}. Paired on the items both rows ran: Δ in points with its 95% paired-bootstrap "
        f"interval ({stats.RESAMPLES:,} resamples), exact McNemar p, and p Holm-adjusted within each table "
        f"(one budget, one kind of comparison); significant: Holm p < {alpha:g}.",
    ]
    by_budget: dict[tuple[float, str], list[SummaryRow]] = defaultdict(list)
    for r in rows:
        if r.strategy != REFERENCE:
            by_budget[_budget(r)].append(r)
    header = ["| row | n | Δ | 95% CI | p | Holm p | significant |", "|---|---:|---:|---|---:|---:|---|"]
    for budget in sorted(by_budget, key=lambda b: (b[1], -b[0])):
        group = sorted(by_budget[budget], key=lambda r: r.strategy)
        text += ["", f"## keep {budget[0]:g} ({budget[1]})"]
        if ref is not None:
            vs_none = [(r.strategy, r.vs_none) for r in group if r.vs_none is not None]
            if vs_none:
                text += ["", f"Each row minus {REFERENCE} (the unpruned model):", "", *header]
                text += _lines(vs_none, alpha)  # type: ignore[arg-type]
        mine = next((r for r in group if r.strategy == against), None)
        if mine is not None:
            versus = [
                (f"{against} − {r.strategy}", test)
                for r in group
                if r is not mine
                and (test := stats.paired(mine.outcomes, r.outcomes, rule=mine.rule)) is not None
            ]
            if versus:
                text += ["", f"{against} minus each other row of this budget:", "", *header]
                text += _lines(versus, alpha)
    return "\n".join(text) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--against", default="hieravid")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    text = report(args.results, args.against, args.alpha)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"significance: {args.output}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
