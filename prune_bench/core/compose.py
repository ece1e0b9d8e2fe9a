"""Turn what the user typed (``hieravid``, ``visionzip+fastv``, ``--keep 0.3``) into strategies.

A combination mounts the stages of several strategies together. Each part gets an equal share of
the reduction in the requested unit (``keep ** (1/n)`` each): a starting point that the run's
ledger then reports as achieved retention, since parts interact (a layer-level part prunes what an
input-level part left).
"""

from __future__ import annotations

import json
import re
from typing import Any

from prune_bench.core.plugins import Registry
from prune_bench.core.stages import Stage
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig, variant_spec
from prune_bench.errors import UserError


class CombinedConfig(StrategyConfig):
    pass


class Combined(Strategy):
    """Several strategies' stages mounted on one model."""

    name = "combined"
    summary = "stages of several strategies mounted together"
    Config = CombinedConfig

    def __init__(self, parts: list[Strategy]) -> None:
        super().__init__()
        self.parts = parts

    def stages(self, model: ModelInfo) -> list[Stage]:
        return [s for p in self.parts for s in p.stages(model)]

    @property
    def label(self) -> str:
        return "+".join(p.label for p in self.parts)

    @property
    def random(self) -> bool:
        return any(p.random for p in self.parts)

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.label, "parts": [p.describe() for p in self.parts]}


def check_keep(keep: float) -> None:
    if not 0.0 < keep <= 1.0:
        raise UserError(f"--keep must be in (0, 1], got {keep}; e.g. --keep 0.3 keeps 30% of visual tokens")


class Variant(Strategy):
    """A strategy with options given in its name, e.g. ``hieravid[segment_level=false]``: an ablation
    that sits in one table beside the default."""

    name = "variant"
    summary = "a strategy with options fixed in its label"
    Config = CombinedConfig

    def __init__(self, inner: Strategy, tag: str) -> None:
        super().__init__()
        self.inner, self.tag = inner, tag
        self.config = inner.config  # the options in the label are the inner strategy's

    def stages(self, model: ModelInfo) -> list[Stage]:
        return self.inner.stages(model)

    @property
    def label(self) -> str:
        return f"{self.inner.label}[{self.tag}]"

    @property
    def random(self) -> bool:
        return self.inner.random

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "variant": self.tag}


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def split_specs(text: str) -> list[str]:
    """``a[x=1,y=2]+b`` -> ``["a[x=1,y=2]", "b"]`` (a ``+`` inside brackets does not split)."""
    return _split_top(text, "+")


def parse_part(part: str) -> tuple[str, dict[str, Any], str]:
    """``hieravid[segment_level=false,extra_ratio=0.2]`` -> (name, options, tag)."""
    m = re.fullmatch(r"([\w.-]+)(?:\[(.*)\])?", part)
    if not m:
        raise UserError(
            f"cannot read strategy '{part}'; write NAME or NAME[option=value,...], "
            "e.g. hieravid[segment_level=false]"
        )
    name, inner = m.group(1), m.group(2)
    options: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in _split_top(inner or "", ","))):
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"option '{item}' in '{part}' needs a value: {name}[{item}=...]")
        options[key.strip()] = parse_value(raw.strip())
    return name, options, inner or ""


def parse_value(raw: str) -> Any:
    """JSON where it parses (numbers, true/false, lists), else the string; ``false``/``False`` alike."""
    lowered = {"true": True, "false": False, "none": None, "null": None}.get(raw.lower(), raw)
    if lowered is not raw:
        return lowered
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def spec_names(spec: str) -> list[str]:
    return [parse_part(p)[0] for p in split_specs(spec) if p]


def budgeted(
    cls: type[Strategy], keep: float, unit: BudgetUnit, model: ModelInfo, options: dict[str, Any]
) -> Strategy:
    """``cls.for_budget`` with the user's ``options``, under the rule for knobs the budget also sets.

    The rule: a knob the budget solves (``fastv.keep``, ``random.keep``, ``hieravid.ratio`` ...) cannot
    also be set by hand; that is one error line, never a silent overwrite. It is found without asking
    the strategy to declare anything: an option the budgeted config does not carry as given, or a
    ``for_budget`` that passes the same keyword twice.
    """
    given = cls.make_config(**options)  # an unknown or invalid option is one readable line
    try:
        strategy = cls.for_budget(keep, unit, model, **options)
    except TypeError as exc:
        twice = re.search(r"multiple values for (?:keyword )?argument '(\w+)'", str(exc))
        if twice is None or twice.group(1) not in options:
            raise
        key = twice.group(1)
        rest = {k: v for k, v in options.items() if k != key}
        solved = getattr(getattr(cls.for_budget(keep, unit, model, **rest), "config", None), key, None)
        raise _budget_conflict(cls.name, key, options, keep, unit, solved) from None
    config = getattr(strategy, "config", None)
    for key in options:
        solved = getattr(config, key, None)
        if solved != getattr(given, key):
            raise _budget_conflict(cls.name, key, options, keep, unit, solved)
    return strategy


def _budget_conflict(
    name: str, key: str, options: dict[str, Any], keep: float, unit: str, solved: Any
) -> UserError:
    to = f" (to {solved:.4g})" if isinstance(solved, float) else f" (to {solved!r})" if solved is not None else ""
    return UserError(
        f"{name}.{key}={options[key]!r} conflicts with the budget: --keep {keep:g} ({unit}) sets {name}'s "
        f"'{key}'{to}; drop the option and choose the budget with --keep / --budget-unit instead"
    )


def build_strategy(
    spec: str,
    keep: float,
    unit: BudgetUnit,
    model: ModelInfo,
    registry: Registry,
    options: dict[str, dict[str, Any]] | None = None,
) -> Strategy:
    """``spec`` is ``name``, ``name[opt=value,...]`` or ``a+b``; ``options[name]`` add config fields."""
    check_keep(keep)
    parts_text = split_specs(spec)
    if not all(parts_text):
        raise UserError(f"empty strategy name in '{spec}'; join strategies as a+b, e.g. visionzip+fastv")
    names = [parse_part(p)[0] for p in parts_text]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(
            f"'{spec}' mounts {', '.join(twice)} twice; a combination takes each strategy once "
            "(set its options in brackets: fastv[k=3])"
        )
    options = options or {}
    share = keep ** (1.0 / len(parts_text))
    parts: list[Strategy] = []
    for text in parts_text:
        name, inline, _ = parse_part(text)
        cls = registry.strategy(name)
        chosen = {**options.get(name, {}), **inline}
        strategy = budgeted(cls, share, unit, model, chosen)
        # every option the user chose is in the row's name (--set fastv.k=6 runs as fastv[k=6]), written
        # canonically, so the same configuration typed two ways is one row
        parts.append(Variant(strategy, variant_spec(name, chosen)[len(name) + 1 : -1]) if chosen else strategy)
    return parts[0] if len(parts) == 1 else Combined(parts)
