"""An example prune-bench plugin: keep the visual tokens whose embeddings have the largest L2 norm.

Install it (``pip install -e examples/prune-bench-norm``) and ``prune-bench list`` shows ``norm``;
``prune-bench compare norm random --keep 0.3`` compares it. Nothing here is special to built-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from prune_bench import (
    BudgetUnit,
    ModelInfo,
    Stage,
    StageContext,
    Strategy,
    StrategyConfig,
    TokenState,
    budget_count,
    hookimpl,
    topk_visual,
)


class NormConfig(StrategyConfig):
    keep: float = Field(0.3, gt=0, le=1, description="fraction of visual tokens kept at the LLM input")


class NormPrune(Strategy):
    name = "norm"
    summary = "keep the visual tokens with the largest embedding norm (example plugin)"
    Config = NormConfig
    config: NormConfig

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        # Pruning at the input: every layer sees the kept tokens, so all units coincide. The budget
        # sets ``keep``; prune-bench refuses a user's --set norm.keep=... with one line.
        return cls(keep=keep, **options)

    def stages(self, model: ModelInfo) -> list[Stage]:
        keep = self.config.keep

        def prune(state: TokenState, ctx: StageContext) -> TokenState:
            norms = state.hidden[state.visual_index].float().norm(dim=-1)
            return topk_visual(state, norms, budget_count(state.num_visual, keep))

        return [Stage("norm.topk", "input", prune)]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(NormPrune)
