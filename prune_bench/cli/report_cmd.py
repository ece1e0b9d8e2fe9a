"""``prune-bench report``: ``table`` plus the three summary figures, in one command (kept for scripts
that call it; ``prune-bench plot`` draws the full set of figures)."""

from __future__ import annotations

from pathlib import Path

import click

from prune_bench.cli.table import emit, flops_option, format_option, output_option
from prune_bench.report.data import load_records, report_rows
from prune_bench.report.tables import render


@click.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@format_option("md")
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write the summary figures (PNG) into this directory ('prune-bench plot' draws them all).",
)
@click.option("--pdf", is_flag=True, help="With --plots, write each figure as PDF too.")
@flops_option()
@output_option()
def report(
    results_dir: Path, fmt: str, plots_dir: Path | None, pdf: bool, flops: str, output: Path | None
) -> None:
    """Print the accuracy table of RESULTS_DIR (a 'compare --out' directory) and optionally plot it."""
    records = load_records(results_dir)
    emit(render(report_rows(records), fmt, flops, paper_layout=True), output)
    if plots_dir is not None:
        from prune_bench.report.plots import write_plots  # matplotlib only when plotting

        for path in write_plots(records, plots_dir, flops=flops, pdf=pdf):
            click.echo(f"plot: {path}", err=True)
