"""``prune-bench table``: the accuracy table of one or more results directories, as papers print it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from prune_bench.core.flops import CONVENTIONS
from prune_bench.report.data import load_results, report_rows
from prune_bench.report.tables import COLUMN_SETS, COMPACT_TASKS, FLOPS_NOTE, FORMATS, render, render_versus

#: what ``click.option(...)`` returns: a decorator of a command function
OptionDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def format_option(default: str) -> OptionDecorator:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=default,
        show_default=True,
        help="Table format: markdown (md), LaTeX (booktabs) or CSV.",
    )


def flops_option() -> OptionDecorator:
    return click.option(
        "--flops",
        type=click.Choice(CONVENTIONS),
        default="exact",
        show_default=True,
        help="FLOPs convention: " + "; ".join(FLOPS_NOTE[c] for c in CONVENTIONS) + ".",
    )


def output_option() -> OptionDecorator:
    return click.option(
        "--output",
        "-o",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the table to this file instead of printing it.",
    )


def columns_option() -> OptionDecorator:
    return click.option(
        "--columns",
        "columns_set",
        type=click.Choice(COLUMN_SETS),
        default=None,
        help="Column set of markdown and LaTeX: 'compact' fits a page (no input/decode retention or "
        f"absolute FLOPs, the percentage of 'none' on the average only, per-task columns only up to "
        f"{COMPACT_TASKS} tasks), 'all' prints every column. Default: compact for LaTeX, all otherwise; "
        "CSV always has every column.",
    )


def emit(text: str, output: Path | None) -> None:
    """Print ``text``, or write it to ``output`` (saying where on stderr)."""
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    click.echo(f"table: {output}", err=True)


@click.command("table")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@format_option("markdown")
@flops_option()
@output_option()
@columns_option()
@click.option(
    "--versus",
    nargs=2,
    metavar="A B",
    default=None,
    help="Instead of the table, compare strategy A with strategy B (as the table names them; 'none' "
    "for the unpruned model) at every budget both ran, paired on the items both ran: the accuracy of "
    "each, A - B with its 95% bootstrap interval, and the exact McNemar p-value.",
)
def table(
    results: tuple[Path, ...],
    fmt: str,
    flops: str,
    output: Path | None,
    columns_set: str | None,
    versus: tuple[str, str] | None,
) -> None:
    """Print the table of RESULTS (one or more results directories of one model and benchmark).

    A column per task, the benchmark's headline number (its own rule: accuracy over all questions,
    or the mean of task accuracies) with its 95% bootstrap interval, each accuracy also as a
    percentage of the unpruned model, the best accuracy within a budget in bold where it is
    significantly better than every other method there (exact McNemar p < 0.05; CSV: a 'best'
    column), retention (input, layer-average, decode), prefill FLOPs (absolute per item and
    relative), and the change vs the unpruned model with the p-value of an exact McNemar test on the
    items both ran (CSV: every interval raw, per task too).
    """
    rows = report_rows(load_results(results))
    if versus is not None:
        emit(render_versus(rows, *versus, fmt=fmt), output)
        return
    emit(render(rows, fmt, flops, paper_layout=True, columns_set=columns_set), output)
