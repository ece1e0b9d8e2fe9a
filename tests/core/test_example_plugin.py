"""The example third-party plugin in examples/ registers and runs like a built-in."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from prune_bench.core.plugins import Registry, make_plugin_manager
from prune_bench.core.stages import PruningPlan

EXAMPLE = Path(__file__).parents[2] / "examples" / "prune-bench-norm" / "prune_bench_norm.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("prune_bench_norm", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_plugin_registers_and_prunes_to_its_budget(tiny_adapter, tiny_sample):
    reg = Registry(make_plugin_manager(extra=[_load_example()], load_entry_points=False))
    cls = reg.strategy("norm")
    info = tiny_adapter.model_info(6)
    strategy = cls.for_budget(0.5, "layer-average", info)
    _, _, sample = tiny_sample
    result = tiny_adapter.run(sample, PruningPlan.of(strategy.stages(info), info.num_layers))
    assert result.input_visual == round(0.5 * sample.state.num_visual)
    assert result.layer_average_retention == result.input_retention
    # the survivors are exactly the visual tokens with the largest norms
    state = sample.state
    norms = state.hidden[state.visual_index].float().norm(dim=-1)
    expected = set(state.source[state.visual_index][norms.topk(result.input_visual).indices].tolist())
    pre = tiny_adapter.runner.prefill(state, PruningPlan.of(strategy.stages(info), info.num_layers))
    assert set(pre.state.source[pre.state.visual_index].tolist()) == expected
