"""``prune-bench compare``: strategies side by side on one model and benchmark."""

from __future__ import annotations

from typing import Any

import click

from prune_bench.cli.evaluation import (
    EvaluationSettings,
    check_inputs,
    evaluation_options,
    parse_sets,
    run_evaluation,
)
from prune_bench.core.plugins import registry

__all__ = ["compare", "parse_sets"]  # parse_sets: `speed` reads --set the same way


@click.command("compare")
@click.argument("strategies", nargs=-1, required=True)
@evaluation_options(default_keeps=(0.3,))
def compare(strategies: tuple[str, ...], **settings: Any) -> None:
    """Compare STRATEGIES at one budget (or several: --keep 0.1 0.3).

    A strategy is NAME, NAME[option=value,...] (an ablation, e.g. 'hieravid[segment_level=false]'), or
    A+B to mount the stages of several together. The unpruned model ('none') is always the reference row.
    """
    evaluation = EvaluationSettings(**settings)
    reg = registry()
    check_inputs(strategies, evaluation, reg)
    run_evaluation(strategies, evaluation, reg)
