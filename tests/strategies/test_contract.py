"""The strategy contract (prune_bench/contract.py, shared with plugin packages through the pytest
plugin) on every registered strategy, plus what the contract relies on in the core."""

from __future__ import annotations

import torch

from prune_bench.contract import StrategyContract
from prune_bench.core.stages import PruningPlan, Stage
from prune_bench.strategies.common.select import keep_visual_subset


class TestEveryRegisteredStrategy(StrategyContract):
    pass


def test_two_post_stages_at_one_layer_see_the_attention_of_the_survivors(contract_adapter, contract_sample):
    """A second stage at the same layer gets the columns of the tokens the first one left."""
    seen: dict[str, list] = {"a": [], "b": []}

    def first(state, ctx):
        seen["a"].append((ctx.last_token_attention(state), state.source.clone()))
        return keep_visual_subset(state, torch.arange(0, state.num_visual, 2))

    def second(state, ctx):
        seen["b"].append((ctx.last_token_attention(state), state.source.clone()))
        return state

    stages = [Stage("t.first", "layer", first, layer=1), Stage("t.second", "layer", second, layer=1)]
    plan = PruningPlan.of(stages, 8)
    for mode in ("drop", "mask"):
        contract_adapter.run(contract_sample, plan, mode=mode)
        (full, src_a), (sub, src_b) = seen["a"][-1], seen["b"][-1]
        assert sub.shape[-1] == src_b.numel() < src_a.numel()
        torch.testing.assert_close(sub, full[..., torch.searchsorted(src_a, src_b)])
