"""Plugin discovery: built-ins, entry points, the allowlist, and duplicate names."""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest

from prune_bench.core import plugins
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.plugins import DuplicateNameError, Registry, make_plugin_manager
from prune_bench.core.stages import Stage
from prune_bench.core.strategy import ModelInfo, Strategy, StrategyConfig
from prune_bench.errors import UserError


class KeepFirstConfig(StrategyConfig):
    pass


class KeepFirst(Strategy):
    name = "keep-first"
    summary = "a test plugin"
    Config = KeepFirstConfig

    def stages(self, model: ModelInfo) -> list[Stage]:
        return []


def _plugin(*classes: type[Strategy]) -> types.SimpleNamespace:
    @hookimpl
    def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
        for cls in classes:
            register(cls)

    return types.SimpleNamespace(register_strategies=register_strategies)


def test_builtins_register_through_the_same_hook():
    reg = Registry(make_plugin_manager(load_entry_points=False))
    assert {"none", "random", "uniform", "hieravid"} <= set(reg.strategies)
    assert "llava_onevision" in reg.adapters
    assert {"list", "compare"} <= set(reg.commands)


def test_a_plugin_defined_here_is_discovered():
    reg = Registry(make_plugin_manager(extra=[_plugin(KeepFirst)], load_entry_points=False))
    assert reg.strategy("keep-first") is KeepFirst


class _EntryPoint:
    def __init__(self, name: str, obj: object) -> None:
        self.name, self._obj = name, obj

    def load(self) -> object:
        return self._obj


@pytest.mark.parametrize(
    ("allow", "found"), [(None, True), ("", False), ("other", False), ("mine,other", True)]
)
def test_entry_points_load_subject_to_the_allowlist(monkeypatch, allow, found):
    monkeypatch.setattr(plugins, "entry_points", lambda group: [_EntryPoint("mine", _plugin(KeepFirst))])
    if allow is None:
        monkeypatch.delenv(plugins.ALLOWLIST_ENV, raising=False)
    else:
        monkeypatch.setenv(plugins.ALLOWLIST_ENV, allow)
    reg = Registry(make_plugin_manager())
    assert ("keep-first" in reg.strategies) is found


def test_a_duplicate_name_is_a_clear_error():
    class Impostor(KeepFirst):
        name = "random"

    with pytest.raises(DuplicateNameError, match="two plugins register a strategy named 'random'"):
        Registry(make_plugin_manager(extra=[_plugin(Impostor)], load_entry_points=False))


def test_unknown_strategy_suggests_close_names():
    reg = Registry(make_plugin_manager(load_entry_points=False))
    with pytest.raises(UserError, match="unknown strategy 'hieravd'; did you mean 'hieravid'"):
        reg.strategy("hieravd")
