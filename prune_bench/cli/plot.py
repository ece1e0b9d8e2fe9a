"""``prune-bench plot``: the figures of one or more results directories, without loading a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prune_bench.cli.table import flops_option
from prune_bench.errors import UserError
from prune_bench.report.data import load_results, run_context


def ablation_labels() -> dict[str, str]:
    """Recorded variant name -> its label in the strategy's ``ablations`` (for every registered one)."""
    from prune_bench.core.plugins import registry

    return {spec: text for cls in registry().strategies.values() for text, spec in _specs(cls).items()}


def results_context(results: tuple[Path, ...]) -> dict[str, Any] | None:
    """Model, benchmark and frames of the runs in ``results`` (one setting: :func:`load_results` checks
    it), from the first directory whose manifest names them; None for hand-made stores."""
    return next((c for c in map(run_context, results) if c is not None), None)


def _specs(cls: type) -> dict[str, str]:
    try:
        return cls.ablation_specs()  # type: ignore[attr-defined,no-any-return]
    except (AttributeError, UserError):
        return {}


@click.command("plot")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("figures"),
    show_default=True,
    help="Directory for the figures (PNG and PDF).",
)
@flops_option()
@click.option("--no-pdf", is_flag=True, help="PNG only (by default every figure is also a vector PDF).")
def plot(results: tuple[Path, ...], out_dir: Path, flops: str, no_pdf: bool) -> None:
    """Draw the figures of RESULTS (one or more 'compare', 'sweep' or 'ablate' --out directories of
    one model and benchmark): accuracy vs retention, vs prefill FLOPs and vs TTFT with the Pareto
    front, visual tokens per LLM layer per strategy, and the ablation bars of each ablated strategy.
    Each title names the model, benchmark, frames and items.
    """
    from prune_bench.report.plots import write_figures  # matplotlib only when plotting

    records = load_results(results)
    paths = write_figures(
        records,
        out_dir,
        flops=flops,
        labels=ablation_labels(),
        pdf=not no_pdf,
        on_write=lambda p: click.echo(f"plot: {p}", err=True),
        context=results_context(results),
    )
    click.echo(f"{len(paths)} files in {out_dir}", err=True)
