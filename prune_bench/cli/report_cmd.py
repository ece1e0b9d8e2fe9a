"""``prune-bench report``: ``table`` plus the figures of ``prune-bench plot`` (the same figures from the
same inputs), in one command (kept for scripts that call it)."""

from __future__ import annotations

from pathlib import Path

import click

from prune_bench.cli.table import columns_option, emit, flops_option, format_option, output_option
from prune_bench.report.data import load_records, report_rows, run_context
from prune_bench.report.tables import render


@click.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@format_option("md")
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write the figures of 'prune-bench plot' (PNG) into this directory.",
)
@click.option("--pdf", is_flag=True, help="With --plots, write each figure as PDF too.")
@flops_option()
@output_option()
@columns_option()
def report(
    results_dir: Path,
    fmt: str,
    plots_dir: Path | None,
    pdf: bool,
    flops: str,
    output: Path | None,
    columns_set: str | None,
) -> None:
    """Print the accuracy table of RESULTS_DIR (a 'compare --out' directory) and optionally plot it."""
    records = load_records(results_dir)
    emit(render(report_rows(records), fmt, flops, paper_layout=True, columns_set=columns_set), output)
    if plots_dir is not None:
        from prune_bench.cli.plot import ablation_labels
        from prune_bench.report.plots import write_figures  # matplotlib only when plotting

        write_figures(
            records,
            plots_dir,
            flops=flops,
            labels=ablation_labels(),
            pdf=pdf,
            on_write=lambda p: click.echo(f"plot: {p}", err=True),
            context=run_context(results_dir),
        )
