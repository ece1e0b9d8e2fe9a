"""prune-bench: compare visual-token pruning strategies on video LLMs.

The public API, flat: everything a strategy plugin or a script needs is importable from here::

    from prune_bench import Stage, Strategy, StrategyConfig, TokenState, hookimpl, topk_visual

* writing a strategy: :class:`Strategy`, :class:`StrategyConfig`, :class:`Stage`, :class:`ModelInfo`,
  :class:`TokenState`, :data:`hookimpl`, :class:`StageContext`, :class:`BudgetWarning`,
  :func:`warn_budget`;
* selecting tokens: :func:`topk_visual`, :func:`topk_per_frame`, :func:`keep_visual_subset`,
  :func:`budget_count`, :func:`last_token_visual_attention`;
* the budget ledger: :class:`LayerCount`, :class:`Retention`, :func:`full_layers`,
  :func:`kept_for_layer_average`, :func:`predict_layer_average`;
* running: :class:`Session` (one configured run on one model), :func:`registry`, :class:`UserError`.

Names are imported on first use, so ``import prune_bench`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "hookimpl": "prune_bench.core.hookspecs",
    "hookspec": "prune_bench.core.hookspecs",
    "Strategy": "prune_bench.core.strategy",
    "StrategyConfig": "prune_bench.core.strategy",
    "ModelInfo": "prune_bench.core.strategy",
    "variant_spec": "prune_bench.core.strategy",
    "Stage": "prune_bench.core.stages",
    "PruningPlan": "prune_bench.core.stages",
    "TokenState": "prune_bench.core.state",
    "TokenKind": "prune_bench.core.state",
    "StageContext": "prune_bench.core.context",
    "DecodeContext": "prune_bench.core.context",
    "BudgetUnit": "prune_bench.core.ledger",
    "BudgetWarning": "prune_bench.core.ledger",
    "LayerCount": "prune_bench.core.ledger",
    "Retention": "prune_bench.core.ledger",
    "full_layers": "prune_bench.core.ledger",
    "kept_for_layer_average": "prune_bench.core.ledger",
    "predict_layer_average": "prune_bench.core.ledger",
    "warn_budget": "prune_bench.core.ledger",
    "topk_visual": "prune_bench.strategies.common.select",
    "topk_per_frame": "prune_bench.strategies.common.select",
    "keep_visual_subset": "prune_bench.strategies.common.select",
    "budget_count": "prune_bench.strategies.common.select",
    "last_token_visual_attention": "prune_bench.strategies.common.select",
    "Session": "prune_bench.session",
    "registry": "prune_bench.core.plugins",
    "UserError": "prune_bench.errors",
}

__all__ = [
    "BudgetUnit",
    "BudgetWarning",
    "DecodeContext",
    "LayerCount",
    "ModelInfo",
    "PruningPlan",
    "Retention",
    "Session",
    "Stage",
    "StageContext",
    "Strategy",
    "StrategyConfig",
    "TokenKind",
    "TokenState",
    "UserError",
    "budget_count",
    "full_layers",
    "hookimpl",
    "hookspec",
    "keep_visual_subset",
    "kept_for_layer_average",
    "last_token_visual_attention",
    "predict_layer_average",
    "registry",
    "topk_per_frame",
    "topk_visual",
    "variant_spec",
    "warn_budget",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from prune_bench.core.context import DecodeContext, StageContext
    from prune_bench.core.hookspecs import hookimpl, hookspec
    from prune_bench.core.ledger import (
        BudgetUnit,
        BudgetWarning,
        LayerCount,
        Retention,
        full_layers,
        kept_for_layer_average,
        predict_layer_average,
        warn_budget,
    )
    from prune_bench.core.plugins import registry
    from prune_bench.core.stages import PruningPlan, Stage
    from prune_bench.core.state import TokenKind, TokenState
    from prune_bench.core.strategy import ModelInfo, Strategy, StrategyConfig, variant_spec
    from prune_bench.errors import UserError
    from prune_bench.session import Session
    from prune_bench.strategies.common.select import (
        budget_count,
        keep_visual_subset,
        last_token_visual_attention,
        topk_per_frame,
        topk_visual,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prune_bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
