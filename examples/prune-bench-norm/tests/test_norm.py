"""prune-bench's strategy contract on ``norm`` (from the pytest plugin prune-bench ships; pyproject.toml
names the strategy: ``prune_bench_strategies = ["norm"]``), and what is special to ``norm``."""

from __future__ import annotations

from prune_bench import Session, UserError
from prune_bench.contract import CONTRACT_FRAMES, StrategyContract


class TestNormContract(StrategyContract):
    pass


def test_norm_keeps_the_visual_tokens_with_the_largest_norms(contract_adapter, contract_sample):
    session = Session(contract_adapter, "norm", keep=0.25, num_frames=CONTRACT_FRAMES)
    state = contract_sample.state
    kept = session.prefill(contract_sample).state
    norms = state.hidden[state.visual_index].float().norm(dim=-1)
    count = round(0.25 * state.num_visual)
    expected = set(state.source[state.visual_index][norms.topk(count).indices].tolist())
    assert set(kept.source[kept.visual_index].tolist()) == expected


def test_setting_the_knob_the_budget_sets_is_one_error(contract_adapter):
    import pytest

    with pytest.raises(UserError, match=r"norm\.keep=0\.5 conflicts with the budget"):
        Session(contract_adapter, "norm", keep=0.25, options={"norm": {"keep": 0.5}})
