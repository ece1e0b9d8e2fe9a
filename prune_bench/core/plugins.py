"""The plugin manager: built-ins from ``DEFAULT_PLUGINS``, installed ones from entry points.

``PRUNE_BENCH_PLUGINS`` limits which installed plugins load: unset loads all of them, an empty
string loads none, ``a,b`` loads only the entry points named ``a`` and ``b``. Built-ins always load.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from prune_bench.core import hookspecs
from prune_bench.errors import UserError

if TYPE_CHECKING:
    import click

    from prune_bench.adapters.base import Adapter
    from prune_bench.core.strategy import Strategy

ENTRY_POINT_GROUP = "prune_bench"
ALLOWLIST_ENV = "PRUNE_BENCH_PLUGINS"
DEFAULT_PLUGINS: tuple[str, ...] = (
    "prune_bench.strategies.simple",
    "prune_bench.strategies.hieravid",
    "prune_bench.adapters.llava_onevision",
    "prune_bench.benchmarks.registry",
    "prune_bench.cli.commands",
    "prune_bench.strategies.fastv",
    "prune_bench.strategies.visionzip",
    "prune_bench.strategies.dycoke",
    "prune_bench.strategies.pyramiddrop",
    "prune_bench.strategies.divprune",
    "prune_bench.strategies.framefusion",
    "prune_bench.strategies.fastvid",
    "prune_bench.strategies.vispruner",
    "prune_bench.strategies.prunevid",
    "prune_bench.strategies.holitom",
    "prune_bench.adapters.qwen2_vl",
)

T = TypeVar("T")


class DuplicateNameError(UserError):
    """Two plugins registered the same name for a strategy, adapter, benchmark or command."""


def make_plugin_manager(extra: Iterable[object] = (), load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("prune_bench")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entry_points:
        allow = os.environ.get(ALLOWLIST_ENV)
        allowed = None if allow is None else {a.strip() for a in allow.split(",") if a.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if pm.get_plugin(ep.name) is None:
                pm.register(ep.load(), name=ep.name)
    for plugin in extra:
        pm.register(plugin)
    return pm


class Registry:
    """Everything the plugins registered, by name."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.strategies: dict[str, type[Strategy]] = {}
        self.adapters: dict[str, type[Adapter]] = {}
        self.benchmarks: dict[str, Callable[..., Any]] = {}
        self.commands: dict[str, click.Command] = {}
        pm.hook.register_strategies(
            register=lambda cls: self._add(self.strategies, cls.name, cls, "strategy")
        )
        pm.hook.register_adapters(register=lambda cls: self._add(self.adapters, cls.name, cls, "adapter"))
        pm.hook.register_benchmarks(register=lambda n, f: self._add(self.benchmarks, n, f, "benchmark"))
        pm.hook.register_commands(register=lambda c: self._add(self.commands, c.name, c, "command"))

    @staticmethod
    def _add(table: dict[str, T], name: str | None, value: T, what: str) -> None:
        if not name:
            raise ValueError(f"a {what} registered without a name: {value!r}")
        if name in table and table[name] is not value:
            raise DuplicateNameError(
                f"two plugins register a {what} named '{name}' ({table[name]!r} and {value!r}); "
                f"uninstall one or limit plugins with {ALLOWLIST_ENV}"
            )
        table[name] = value

    def strategy(self, name: str) -> type[Strategy]:
        return _lookup(self.strategies, name, "strategy", "prune-bench list")

    def benchmark(self, name: str) -> Callable[..., Any]:
        return _lookup(self.benchmarks, name, "benchmark", "prune-bench list")


def _lookup(table: dict[str, T], name: str, what: str, hint: str) -> T:
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
    suggestion = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UserError(f"unknown {what} '{name}'{suggestion} (see `{hint}` for all of them)")


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry of built-in and installed plugins."""
    return Registry(make_plugin_manager())
