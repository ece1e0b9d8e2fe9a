"""``prune-bench sweep``: strategies across several budgets, the data of an accuracy-vs-retention curve."""

from __future__ import annotations

from typing import Any

import click

from prune_bench.cli.evaluation import EvaluationSettings, check_inputs, evaluation_options, run_evaluation
from prune_bench.core.plugins import registry

DEFAULT_KEEPS = (0.1, 0.2, 0.3)


@click.command("sweep")
@click.argument("strategies", nargs=-1, required=True)
@evaluation_options(default_keeps=DEFAULT_KEEPS)
def sweep(strategies: tuple[str, ...], **settings: Any) -> None:
    """Run STRATEGIES at every --keep (default 0.1 0.2 0.3) into one resumable results store.

    Strategies are written as for 'compare' (NAME, NAME[option=value], A+B). Then
    'prune-bench plot DIR' draws the curves and 'prune-bench table DIR' prints the table.
    """
    evaluation = EvaluationSettings(**settings)
    reg = registry()
    check_inputs(strategies, evaluation, reg)
    out = run_evaluation(strategies, evaluation, reg)
    click.echo(f"next: prune-bench plot {out} --out FIGURES_DIR; prune-bench table {out}", err=True)
