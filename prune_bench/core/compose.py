"""Turn what the user typed (``hieravid``, ``visionzip+fastv``, ``--keep 0.3``) into strategies.

A combination mounts the stages of several strategies together. Each part gets an equal share of
the reduction in the requested unit (``keep ** (1/n)`` each): a starting point that the run's
ledger then reports as achieved retention, since parts interact (a layer-level part prunes what an
input-level part left).
"""

from __future__ import annotations

from typing import Any

from prune_bench.core.plugins import Registry
from prune_bench.core.stages import Stage
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig
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

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.label, "parts": [p.describe() for p in self.parts]}


def check_keep(keep: float) -> None:
    if not 0.0 < keep <= 1.0:
        raise UserError(f"--keep must be in (0, 1], got {keep}; e.g. --keep 0.3 keeps 30% of visual tokens")


def build_strategy(
    spec: str,
    keep: float,
    unit: BudgetUnit,
    model: ModelInfo,
    registry: Registry,
    options: dict[str, dict[str, Any]] | None = None,
) -> Strategy:
    """``spec`` is a name or ``a+b``; ``options[name]`` are config fields for that part."""
    check_keep(keep)
    names = [n.strip() for n in spec.split("+") if n.strip()]
    if not names:
        raise UserError(f"empty strategy name in '{spec}'")
    options = options or {}
    share = keep ** (1.0 / len(names))
    parts = [registry.strategy(n).for_budget(share, unit, model, **options.get(n, {})) for n in names]
    return parts[0] if len(parts) == 1 else Combined(parts)
