"""prune-bench's strategy contract on ``norm`` (from the pytest plugin prune-bench ships; pyproject.toml
names the strategy: ``prune_bench_strategies = ["norm"]``), and what is special to ``norm``."""

from __future__ import annotations

from prune_bench.contract import CONTRACT_FRAMES, StrategyContract
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan


class TestNormContract(StrategyContract):
    pass


def test_norm_keeps_the_visual_tokens_with_the_largest_norms(contract_adapter, contract_sample):
    info = contract_adapter.model_info(CONTRACT_FRAMES)
    strategy = registry().strategy("norm").for_budget(0.25, "layer-average", info)
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    state = contract_sample.state
    kept = contract_adapter.runner.prefill(state, plan).state
    norms = state.hidden[state.visual_index].float().norm(dim=-1)
    count = round(0.25 * state.num_visual)
    expected = set(state.source[state.visual_index][norms.topk(count).indices].tolist())
    assert set(kept.source[kept.visual_index].tolist()) == expected
