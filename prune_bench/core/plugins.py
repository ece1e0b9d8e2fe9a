"""The plugin manager: built-ins from ``BUILTIN_PLUGINS``, installed ones from entry points.

``PRUNE_BENCH_PLUGINS`` limits which installed plugins load: unset loads all of them, an empty
string loads none, ``a,b`` loads only the entry points named ``a`` and ``b``. Built-ins always load.

Built-ins are registered lazily: ``BUILTIN_PLUGINS`` names each built-in module and the hooks it
implements, and the plugin manager holds a stand-in for each module whose hook functions import the
module the first time the hook is called. So ``prune-bench --help`` (which calls only
``register_commands``) imports no strategy module, and listing strategies imports no adapter.

Installed plugins are loaded eagerly, each with the distribution that installed it; after all
registration ``check_pending`` makes a hook implementation that matches no hook specification (a
misspelled ``register_stratgies``) an error instead of a function that is silently never called.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from importlib.metadata import PackageNotFoundError, entry_points, version
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from prune_bench.core import hookspecs
from prune_bench.core.hookspecs import hookimpl
from prune_bench.errors import UserError

if TYPE_CHECKING:
    import click

    from prune_bench.adapters.base import Adapter
    from prune_bench.core.strategy import Strategy

PROJECT = "prune_bench"
DISTRIBUTION = "prune-bench"
ENTRY_POINT_GROUP = "prune_bench"
ALLOWLIST_ENV = "PRUNE_BENCH_PLUGINS"

#: Each built-in plugin module and the hooks it implements (a module is imported only when one of
#: them is called). A hook implemented by the module but missing here is an error when it loads.
BUILTIN_PLUGINS: dict[str, tuple[str, ...]] = {
    "prune_bench.strategies.simple": ("register_strategies",),
    "prune_bench.strategies.hieravid": ("register_strategies",),
    "prune_bench.adapters.llava_onevision": ("register_adapters",),
    "prune_bench.benchmarks.registry": ("register_benchmarks",),
    "prune_bench.cli.commands": ("register_commands",),
    "prune_bench.strategies.fastv": ("register_strategies",),
    "prune_bench.strategies.visionzip": ("register_strategies",),
    "prune_bench.strategies.dycoke": ("register_strategies",),
    "prune_bench.strategies.pyramiddrop": ("register_strategies",),
    "prune_bench.strategies.divprune": ("register_strategies",),
    "prune_bench.strategies.framefusion": ("register_strategies",),
    "prune_bench.strategies.fastvid": ("register_strategies",),
    "prune_bench.strategies.vispruner": ("register_strategies",),
    "prune_bench.strategies.prunevid": ("register_strategies",),
    "prune_bench.strategies.holitom": ("register_strategies",),
    "prune_bench.strategies.cdpruner": ("register_strategies",),
    "prune_bench.strategies.evs": ("register_strategies",),
    "prune_bench.strategies.pooling": ("register_strategies",),
    "prune_bench.strategies.flashvid": ("register_strategies",),
    "prune_bench.strategies.vidcom2": ("register_strategies",),
    "prune_bench.strategies.dart": ("register_strategies",),
    "prune_bench.adapters.qwen2_vl": ("register_adapters",),
    "prune_bench.adapters.internvl": ("register_adapters",),
    "prune_bench.adapters.qwen3_vl": ("register_adapters",),
}
DEFAULT_PLUGINS: tuple[str, ...] = tuple(BUILTIN_PLUGINS)

T = TypeVar("T")


class DuplicateNameError(UserError):
    """Two plugins registered the same name for a strategy, adapter, benchmark or command."""


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin came from; ``distribution`` is None for one passed in by code."""

    name: str
    module: str
    distribution: str | None
    version: str | None

    def describe(self) -> str:
        if self.distribution is None:
            return f"module {self.module}"
        where = (
            f"module {self.module}"
            if self.name == self.module
            else f"plugin '{self.name}', module {self.module}"
        )
        return f"{self.distribution} {self.version} ({where})"


@lru_cache(maxsize=1)
def _own_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def _normalized(dist: str | None) -> str | None:
    return None if dist is None else re.sub(r"[-_.]+", "-", dist).lower()


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with prune-bench's hook specs, remembering where each plugin came from."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(hookspecs)
        self.origins: dict[str, PluginInfo] = {}

    def add(self, plugin: object, info: PluginInfo) -> None:
        """Register ``plugin`` under ``info.name``; a plugin pluggy rejects is a one-line UserError."""
        try:
            self.register(plugin, name=info.name)
        except pluggy.PluginValidationError as exc:  # e.g. a hookimpl taking an argument the spec lacks
            reason = "; ".join(str(exc).splitlines())
            raise UserError(f"cannot load the plugin from {info.describe()}: {reason}") from None
        except ValueError as exc:  # the same object or name registered twice
            reason = str(exc).splitlines()[0]
            raise UserError(f"cannot load the plugin from {info.describe()}: {reason}") from None
        self.origins[info.name] = info

    def info(self, plugin: object) -> PluginInfo:
        name = self.get_name(plugin) or repr(plugin)
        return self.origins.get(name) or PluginInfo(name, _module_of(plugin), None, None)

    def check(self) -> None:
        """``check_pending``: a hook implementation matching no hook spec is a one-line UserError."""
        try:
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            raise UserError(self._unknown_hooks_message(exc.plugin)) from None

    def _unknown_hooks_message(self, plugin: object) -> str:
        specs = sorted(n for n, c in vars(self.hook).items() if not n.startswith("_") and c.has_spec())
        unknown = sorted(
            name
            for name, caller in vars(self.hook).items()
            if not name.startswith("_")
            and not caller.has_spec()
            and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls())
        )
        bad = unknown[0] if unknown else "?"
        close = difflib.get_close_matches(bad, specs, n=1, cutoff=0.6)
        fix = f"rename it to '{close[0]}'" if close else f"rename it to one of {', '.join(specs)}"
        return (
            f"the plugin from {self.info(plugin).describe()} implements the hook "
            f"'{', '.join(unknown) or bad}', which prune-bench does not have; {fix} "
            "(the hooks are listed in prune_bench.core.hookspecs)"
        )


def _module_of(plugin: object) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    for attr in dir(plugin):
        value = inspect.getattr_static(plugin, attr, None)
        if inspect.isfunction(value) and hasattr(value, f"{PROJECT}_impl"):
            return value.__module__
    return type(plugin).__module__


class _LazyBuiltin:
    """Stands in for a built-in plugin module; its hook functions import the module when called."""

    def __init__(self, module: str, hooks: Iterable[str]) -> None:
        self.__name__ = module
        for hook in hooks:
            setattr(self, hook, _lazy_hookimpl(module, hook))

    def __repr__(self) -> str:
        return f"<built-in plugin {self.__name__}, not imported until used>"


def _lazy_hookimpl(module: str, hook: str) -> Callable[..., Any]:
    def impl(register: Callable[..., None]) -> None:
        _builtin_hook(module, hook)(register=register)

    impl.__name__ = impl.__qualname__ = hook
    return hookimpl(impl)


def _builtin_hook(module: str, hook: str) -> Callable[..., None]:
    mod = importlib.import_module(module)
    implemented = {
        n
        for n in dir(mod)
        if inspect.isfunction(getattr(mod, n)) and hasattr(getattr(mod, n), f"{PROJECT}_impl")
    }
    declared = set(BUILTIN_PLUGINS.get(module, ()))
    if implemented != declared:
        raise RuntimeError(
            f"{module} implements the hooks {sorted(implemented)} but BUILTIN_PLUGINS in "
            f"prune_bench/core/plugins.py says {sorted(declared)}; make them agree"
        )
    fn: Callable[..., None] = getattr(mod, hook)
    return fn


def _installed_plugins(allowed: set[str] | None) -> list[tuple[Any, PluginInfo]]:
    """The entry points to load, each with its distribution; one name from two distributions is an error."""
    chosen: dict[str, tuple[Any, PluginInfo]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            name=ep.name,
            module=getattr(ep, "module", None) or str(getattr(ep, "value", "?")).split(":")[0],
            distribution=None if dist is None else dist.name,
            version=None if dist is None else dist.version,
        )
        if ep.name in BUILTIN_PLUGINS:
            raise UserError(
                f"{info.describe()} registers a plugin named '{ep.name}', the name of a built-in; "
                f"uninstall {info.distribution or 'it'}"
            )
        if ep.name in chosen:
            first = chosen[ep.name][1]
            if first.distribution is not None and _normalized(first.distribution) == _normalized(
                info.distribution
            ):
                continue  # one distribution found twice on sys.path: the first one wins, as for imports
            raise UserError(
                f"two installed distributions register the prune-bench plugin '{ep.name}': "
                f"{first.describe()} and {info.describe()}; uninstall one of them "
                f"({ALLOWLIST_ENV} selects plugins by this name, so it cannot choose between them)"
            )
        chosen[ep.name] = (ep, info)
    return list(chosen.values())


def make_plugin_manager(extra: Iterable[object] = (), load_entry_points: bool = True) -> PluginManager:
    """Built-ins (lazily), then installed plugins (subject to the allowlist), then ``extra``."""
    pm = PluginManager()
    for module, hooks in BUILTIN_PLUGINS.items():
        pm.add(_LazyBuiltin(module, hooks), PluginInfo(module, module, DISTRIBUTION, _own_version()))
    if load_entry_points:
        allow = os.environ.get(ALLOWLIST_ENV)
        allowed = None if allow is None else {a.strip() for a in allow.split(",") if a.strip()}
        for ep, info in _installed_plugins(allowed):
            pm.add(ep.load(), info)
    for plugin in extra:
        name = pm.get_canonical_name(plugin)
        pm.add(plugin, PluginInfo(name, _module_of(plugin), None, None))
    pm.check()
    return pm


class Registry:
    """Everything the plugins registered, by name; each table is collected when first asked for."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    @cached_property
    def strategies(self) -> dict[str, type[Strategy]]:
        return self._collect("register_strategies", "strategy", lambda add: lambda cls: add(cls.name, cls))

    @cached_property
    def adapters(self) -> dict[str, type[Adapter]]:
        return self._collect("register_adapters", "adapter", lambda add: lambda cls: add(cls.name, cls))

    @cached_property
    def benchmarks(self) -> dict[str, Callable[..., Any]]:
        return self._collect("register_benchmarks", "benchmark", lambda add: add)

    @cached_property
    def commands(self) -> dict[str, click.Command]:
        return self._collect("register_commands", "command", lambda add: lambda cmd: add(cmd.name, cmd))

    def plugins(self) -> list[dict[str, str | None]]:
        """Every registered plugin as ``{name, module, distribution, version}`` (JSON-able)."""
        return [asdict(self._info(plugin)) for _, plugin in self.pm.list_name_plugin() if plugin is not None]

    def strategy(self, name: str) -> type[Strategy]:
        return _lookup(self.strategies, name, "strategy", "prune-bench list")

    def benchmark(self, name: str) -> Callable[..., Any]:
        return _lookup(self.benchmarks, name, "benchmark", "prune-bench list")

    def _info(self, plugin: object) -> PluginInfo:
        if isinstance(self.pm, PluginManager):
            return self.pm.info(plugin)
        name = self.pm.get_name(plugin) or repr(plugin)
        return PluginInfo(name, _module_of(plugin), None, None)

    def _collect(self, hook: str, what: str, callback: Callable[[Callable[[str, Any], None]], Any]) -> dict:
        """Call each implementation of ``hook`` in pluggy's order, with a ``register`` that knows its plugin.

        Registration hooks are plain calls, so calling the implementations one by one is what
        ``pm.hook.<hook>(register=...)`` does, except that a duplicate name can say which two
        plugins (and distributions) registered it.
        """
        table: dict[str, Any] = {}
        owners: dict[str, PluginInfo] = {}
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            info = self._info(impl.plugin)
            if impl.hookwrapper or impl.wrapper:
                raise UserError(
                    f"the plugin from {info.describe()} implements {hook} as a wrapper; "
                    "registration hooks are plain calls, so drop wrapper=True / hookwrapper=True"
                )

            def add(name: str | None, value: Any, info: PluginInfo = info) -> None:
                if not name:
                    raise UserError(f"the plugin from {info.describe()} registers a {what} without a name")
                if name in table and table[name] is not value:
                    raise DuplicateNameError(
                        f"two plugins register a {what} named '{name}': {owners[name].describe()} and "
                        f"{info.describe()}; uninstall one or limit plugins with {ALLOWLIST_ENV}"
                    )
                table[name] = value
                owners.setdefault(name, info)

            kwargs = {"register": callback(add)}
            impl.function(*(kwargs[arg] for arg in impl.argnames))
        return table


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
