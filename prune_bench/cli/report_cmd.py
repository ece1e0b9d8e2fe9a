"""``prune-bench report``: tables and figures from a results directory, without loading a model."""

from __future__ import annotations

from pathlib import Path

import click

from prune_bench.report.data import load_records, report_rows
from prune_bench.report.tables import FLOPS_CONVENTIONS, FORMATS, render


@click.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="md",
    show_default=True,
    help="Table format: markdown, LaTeX (booktabs) or CSV.",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write figures (PNG) into this directory.",
)
@click.option("--pdf", is_flag=True, help="With --plots, write each figure as PDF too.")
@click.option(
    "--flops",
    type=click.Choice(FLOPS_CONVENTIONS),
    default="exact",
    show_default=True,
    help="FLOPs convention: 'exact' (GQA-aware, vision tower in) or 'paper' (per-layer formula).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the table to this file instead of printing it.",
)
def report(
    results_dir: Path, fmt: str, plots_dir: Path | None, pdf: bool, flops: str, output: Path | None
) -> None:
    """Print the accuracy table of RESULTS_DIR (a 'compare --out' directory) and optionally plot it."""
    records = load_records(results_dir)
    text = render(report_rows(records), fmt, flops)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        click.echo(f"table: {output}", err=True)
    if plots_dir is not None:
        from prune_bench.report.plots import write_plots  # matplotlib only when plotting

        for path in write_plots(records, plots_dir, flops=flops, pdf=pdf):
            click.echo(f"plot: {path}", err=True)
