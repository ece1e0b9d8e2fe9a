"""``prune-bench list``: strategies, adapters and benchmarks, and a strategy's options."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import click
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prune_bench.core.plugins import registry
from prune_bench.core.strategy import Strategy


def type_name(tp: Any) -> str:
    """A config field's type as a reader writes it: ``float``, ``tuple[int, int] | None``, ``'a' | 'b'``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None:
        return "None" if tp is type(None) else getattr(tp, "__name__", str(tp).replace("typing.", ""))
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
    return f"{getattr(origin, '__name__', str(origin))}[{inner}]"


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def bounds(field: FieldInfo) -> str:
    """The field's numeric constraints, e.g. ``> 0, <= 1`` (empty when it has none)."""
    found = [
        f"{sign} {getattr(m, attr)}" for m in field.metadata for attr, sign in _BOUNDS if hasattr(m, attr)
    ]
    return ", ".join(found)


def options_table(cls: type[Strategy]) -> Table:
    table = Table(title=escape(f"options of {cls.name}: {cls.summary}"), title_justify="left")
    table.add_column("option", no_wrap=True)
    table.add_column("type")
    table.add_column("default")
    table.add_column("description", ratio=1)
    for name, field in cls.Config.model_fields.items():
        kind = type_name(field.annotation)
        limits = bounds(field)
        table.add_row(
            name,
            escape(f"{kind} ({limits})" if limits else kind),
            escape(repr(field.default)),
            escape(field.description or ""),
        )
    return table


@click.command("list")
@click.option(
    "--options",
    "options_of",
    metavar="STRATEGY",
    help="Print one strategy's options (its config schema: types, defaults, meaning) and its ablations.",
)
def list_(options_of: str | None) -> None:
    """List registered strategies, adapters and benchmarks."""
    reg = registry()
    console = Console(width=max(Console().width, 120))
    if options_of:
        cls = reg.strategy(options_of)
        console.print(options_table(cls))
        console.print(
            f"set one with --set {cls.name}.OPTION=VALUE or as a variant: '{cls.name}[OPTION=VALUE,...]'"
        )
        if cls.ablations:
            ablations = Table(title=f"ablations (prune-bench ablate {cls.name})", title_justify="left")
            ablations.add_column("label")
            ablations.add_column("variant")
            for label, spec in cls.ablation_specs().items():
                ablations.add_row(escape(label), escape(spec))
            console.print(ablations)
        return
    table = Table(title="strategies")
    table.add_column("name")
    table.add_column("summary")
    table.add_column("ablations", justify="right")
    for name, cls in sorted(reg.strategies.items()):
        table.add_row(name, escape(cls.summary), str(len(cls.ablations)) if cls.ablations else "")
    console.print(table)
    console.print("adapters: " + ", ".join(sorted(reg.adapters)))
    console.print("benchmarks: " + ", ".join(sorted(reg.benchmarks)))
