"""``prune-bench ablate``: a strategy beside every ablation switch it declares, at the same budgets."""

from __future__ import annotations

from typing import Any

import click

from prune_bench.cli.evaluation import EvaluationSettings, check_inputs, evaluation_options, run_evaluation
from prune_bench.cli.sweep import DEFAULT_KEEPS
from prune_bench.core.plugins import Registry, registry
from prune_bench.errors import UserError


def ablation_specs(names: tuple[str, ...], reg: Registry) -> list[str]:
    """Each strategy followed by its declared ablation variants (``Strategy.ablations``)."""
    specs: list[str] = []
    for name in names:
        cls = reg.strategy(name)
        variants = cls.ablation_specs()
        if not variants:
            with_ablations = sorted(n for n, c in reg.strategies.items() if c.ablations)
            raise UserError(
                f"strategy '{cls.name}' declares no ablations; strategies that do: "
                f"{', '.join(with_ablations) or '(none)'} (or compare variants by hand: "
                f"prune-bench compare '{cls.name}[option=value]')"
            )
        specs += [cls.name, *variants.values()]
    return specs


@click.command("ablate")
@click.argument("strategies", nargs=-1, required=True)
@evaluation_options(default_keeps=DEFAULT_KEEPS)
def ablate(strategies: tuple[str, ...], **settings: Any) -> None:
    """Run each of STRATEGIES and every ablation it declares at every --keep (default 0.1 0.2 0.3).

    'prune-bench list --options NAME' shows a strategy's ablations; 'prune-bench plot DIR' draws them
    as bars beside the strategy.
    """
    evaluation = EvaluationSettings(**settings)
    reg = registry()
    specs = ablation_specs(strategies, reg)
    check_inputs(specs, evaluation, reg)
    for name in strategies:
        cls = reg.strategy(name)
        for label, spec in cls.ablation_specs().items():
            click.echo(f"ablation: {spec:<50} {label}", err=True)
    out = run_evaluation(specs, evaluation, reg)
    click.echo(f"next: prune-bench plot {out} --out FIGURES_DIR; prune-bench table {out}", err=True)
