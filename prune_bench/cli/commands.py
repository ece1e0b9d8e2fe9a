"""The built-in subcommands, registered through the same hook third-party plugins use."""

from __future__ import annotations

from collections.abc import Callable

import click

from prune_bench.core.hookspecs import hookimpl


@hookimpl
def register_commands(register: Callable[[click.Command], None]) -> None:
    from prune_bench.cli.ablate import ablate
    from prune_bench.cli.cache_cmd import cache
    from prune_bench.cli.compare import compare
    from prune_bench.cli.list_cmd import list_
    from prune_bench.cli.plot import plot
    from prune_bench.cli.report_cmd import report
    from prune_bench.cli.speed import speed
    from prune_bench.cli.sweep import sweep
    from prune_bench.cli.table import table
    from prune_bench.cli.train import train_default

    register(list_)
    register(compare)
    register(speed)
    register(report)
    register(sweep)
    register(ablate)
    register(plot)
    register(table)
    register(train_default)
    register(cache)
