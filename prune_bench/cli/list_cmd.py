"""``prune-bench list``: strategies, adapters and benchmarks, and a strategy's options."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from prune_bench.core.plugins import registry


@click.command("list")
@click.option(
    "--options", "options_of", metavar="STRATEGY", help="Print one strategy's options (its config schema)."
)
def list_(options_of: str | None) -> None:
    """List registered strategies, adapters and benchmarks."""
    reg = registry()
    console = Console()
    if options_of:
        cls = reg.strategy(options_of)
        table = Table(title=f"options of {cls.name}: {cls.summary}")
        for col in ("option", "type", "default", "description"):
            table.add_column(col)
        for name, field in cls.Config.model_fields.items():
            table.add_row(
                name,
                str(field.annotation).replace("typing.", ""),
                repr(field.default),
                field.description or "",
            )
        console.print(table)
        return
    table = Table(title="strategies")
    table.add_column("name")
    table.add_column("summary")
    for name, cls in sorted(reg.strategies.items()):
        table.add_row(name, cls.summary)
    console.print(table)
    console.print("adapters: " + ", ".join(sorted(reg.adapters)))
    console.print("benchmarks: " + ", ".join(sorted(reg.benchmarks)))
