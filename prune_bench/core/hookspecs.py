"""Hook specifications: how a plugin adds strategies, adapters, benchmarks and CLI commands.

pluggy only discovers and registers; behaviour lives on the classes a plugin registers. A plugin is
a module (or object) with functions named like the specs below and decorated with
``prune_bench.hookimpl``; built-in plugins register through the very same hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from prune_bench.adapters.base import Adapter
    from prune_bench.core.strategy import Strategy

hookspec = pluggy.HookspecMarker("prune_bench")
hookimpl = pluggy.HookimplMarker("prune_bench")


@hookspec
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    """Register pruning strategies.

    Call ``register(StrategyClass)`` once per strategy; the class's ``name`` is the name users type
    (``prune-bench compare NAME``). A name already registered by another plugin is an error.

    :param register: the callback that records one strategy class.
    """


@hookspec
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    """Register model adapters.

    Call ``register(AdapterClass)``; an adapter says which Hugging Face configs it handles
    (``Adapter.handles(config)``) and which named architectures it can build with random weights.

    :param register: the callback that records one adapter class.
    """


@hookspec
def register_benchmarks(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register benchmarks.

    Call ``register(name, factory)``; ``factory(**options)`` returns an object with ``name``,
    ``tasks``, ``items(limit)`` and ``__len__`` (see ``prune_bench.benchmarks.base.Benchmark``).

    :param register: the callback that records one benchmark factory.
    """


@hookspec
def register_commands(register: Callable[[click.Command], None]) -> None:
    """Register ``prune-bench`` subcommands.

    Call ``register(command)`` with a ``click.Command``; its name is the subcommand's name.

    :param register: the callback that adds one command to the CLI group.
    """
