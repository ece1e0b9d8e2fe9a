"""Plugin discovery: built-ins, entry points, the allowlist, and duplicate names."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import types
from collections.abc import Callable

import pluggy
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
    """What importlib.metadata.entry_points yields: a name, a module, the distribution, load()."""

    def __init__(
        self, name: str, obj: object, dist: str = "prune-bench-mine", version: str = "1.2.3"
    ) -> None:
        self.name, self._obj = name, obj
        self.module = self.value = f"{dist.replace('-', '_')}.plugin"
        self.dist = types.SimpleNamespace(name=dist, version=version)

    def load(self) -> object:
        return self._obj


def _installed(monkeypatch, *eps: _EntryPoint, allow: str | None = None) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda group: list(eps))
    if allow is None:
        monkeypatch.delenv(plugins.ALLOWLIST_ENV, raising=False)
    else:
        monkeypatch.setenv(plugins.ALLOWLIST_ENV, allow)


@pytest.mark.parametrize(
    ("allow", "found"), [(None, True), ("", False), ("other", False), ("mine,other", True)]
)
def test_entry_points_load_subject_to_the_allowlist(monkeypatch, allow, found):
    _installed(monkeypatch, _EntryPoint("mine", _plugin(KeepFirst)), allow=allow)
    reg = Registry(make_plugin_manager())
    assert ("keep-first" in reg.strategies) is found


def test_a_duplicate_name_is_a_clear_error():
    class Impostor(KeepFirst):
        name = "random"

    reg = Registry(make_plugin_manager(extra=[_plugin(Impostor)], load_entry_points=False))
    with pytest.raises(DuplicateNameError, match="two plugins register a strategy named 'random'"):
        reg.strategy("random")


def test_unknown_strategy_suggests_close_names():
    reg = Registry(make_plugin_manager(load_entry_points=False))
    with pytest.raises(UserError, match="unknown strategy 'hieravd'; did you mean 'hieravid'"):
        reg.strategy("hieravd")


def _misspelled() -> types.SimpleNamespace:
    @hookimpl
    def register_stratgies(register: Callable[[type[Strategy]], None]) -> None:
        register(KeepFirst)

    return types.SimpleNamespace(register_stratgies=register_stratgies)


def test_a_misspelled_hookimpl_is_one_line_naming_the_plugin_and_the_fix():
    with pytest.raises(UserError) as caught:
        make_plugin_manager(extra=[_misspelled()], load_entry_points=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "'register_stratgies'" in message and "rename it to 'register_strategies'" in message
    assert f"module {__name__}" in message


def test_a_misspelled_hookimpl_of_an_installed_plugin_names_its_distribution(monkeypatch):
    _installed(monkeypatch, _EntryPoint("mine", _misspelled(), dist="prune-bench-typo", version="0.3"))
    with pytest.raises(UserError, match=r"prune-bench-typo 0\.3 \(plugin 'mine'.*'register_stratgies'"):
        make_plugin_manager()


def test_an_optional_hookimpl_for_an_unknown_hook_is_allowed():
    @hookimpl(optionalhook=True)
    def register_something_newer(register: Callable[[object], None]) -> None:
        pass

    make_plugin_manager(extra=[types.SimpleNamespace(register_something_newer=register_something_newer)])


@pytest.mark.parametrize("allow", [None, "mine"])
def test_one_entry_point_name_from_two_distributions_is_an_error(monkeypatch, allow):
    class Squatter(KeepFirst):
        name = "squatted"

    real = _EntryPoint("mine", _plugin(KeepFirst), dist="prune-bench-mine", version="1.0")
    squat = _EntryPoint("mine", _plugin(Squatter), dist="prune-bench-squat", version="6.6.6")
    _installed(monkeypatch, real, squat, allow=allow)
    with pytest.raises(UserError) as caught:
        make_plugin_manager()
    message = str(caught.value)
    assert "\n" not in message
    assert "two installed distributions register the prune-bench plugin 'mine'" in message
    assert "prune-bench-mine 1.0" in message and "prune-bench-squat 6.6.6" in message


def test_one_distribution_found_twice_loads_once(monkeypatch):
    first = _EntryPoint("mine", _plugin(KeepFirst), dist="prune_bench.mine")
    again = _EntryPoint("mine", _plugin(KeepFirst), dist="prune-bench-mine")
    _installed(monkeypatch, first, again)
    pm = make_plugin_manager()
    assert pm.get_plugin("mine") is first.load()


def test_one_strategy_name_from_two_distributions_names_both(monkeypatch):
    class Other(KeepFirst):
        pass

    _installed(
        monkeypatch,
        _EntryPoint("mine", _plugin(KeepFirst), dist="prune-bench-mine", version="1.0"),
        _EntryPoint("theirs", _plugin(Other), dist="prune-bench-theirs", version="2.0"),
    )
    reg = Registry(make_plugin_manager())
    with pytest.raises(DuplicateNameError) as caught:
        reg.strategy("keep-first")
    message = str(caught.value)
    assert "two plugins register a strategy named 'keep-first'" in message
    assert "prune-bench-mine 1.0" in message and "prune-bench-theirs 2.0" in message
    assert "<class" not in message and "\n" not in message


def test_the_plugin_list_carries_distribution_and_version(monkeypatch):
    _installed(monkeypatch, _EntryPoint("mine", _plugin(KeepFirst), dist="prune-bench-mine", version="1.2.3"))
    listed = Registry(make_plugin_manager()).plugins()
    assert json.loads(json.dumps(listed)) == listed
    assert {
        "name": "mine",
        "module": "prune_bench_mine.plugin",
        "distribution": "prune-bench-mine",
        "version": "1.2.3",
    } in listed
    builtins = [p for p in listed if p["name"] in plugins.BUILTIN_PLUGINS]
    assert [p["name"] for p in builtins] == list(plugins.BUILTIN_PLUGINS)
    assert {(p["distribution"], p["version"]) for p in builtins} == {
        ("prune-bench", importlib.metadata.version("prune-bench"))
    }


def test_asking_for_commands_imports_no_strategy_module(monkeypatch):
    imported: list[str] = []
    real = plugins._builtin_hook
    monkeypatch.setattr(plugins, "_builtin_hook", lambda m, h: imported.append(m) or real(m, h))
    reg = Registry(make_plugin_manager(load_entry_points=False))
    assert "list" in reg.commands
    assert imported == ["prune_bench.cli.commands"]
    assert "random" in reg.strategies
    assert not any(m.startswith("prune_bench.adapters") for m in imported)


def test_the_builtin_manifest_names_the_hooks_each_module_implements():
    pm = pluggy.PluginManager(plugins.PROJECT)
    for module, hooks in plugins.BUILTIN_PLUGINS.items():
        mod = importlib.import_module(module)
        implemented = sorted(n for n in dir(mod) if pm.parse_hookimpl_opts(mod, n) is not None)
        assert implemented == sorted(hooks), module


def test_a_wrapper_for_a_registration_hook_is_refused():
    @hookimpl(wrapper=True)
    def register_strategies(register: Callable[[type[Strategy]], None]):
        return (yield)

    reg = Registry(
        make_plugin_manager(extra=[types.SimpleNamespace(register_strategies=register_strategies)])
    )
    with pytest.raises(UserError, match="as a wrapper"):
        reg.strategy("random")
