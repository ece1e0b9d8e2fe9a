"""Contract every registered strategy honours, built-in or plugin.

On a tiny 8-layer LLaVA-OneVision (random weights, 16 frames of 4x4 tokens, two scenes):
valid selections that never touch text, the requested layer-averaged budget met (or a BudgetWarning),
drop mode equal to mask mode, determinism for a seed, and configs that reject unknown fields.
"""

from __future__ import annotations

import json
import sys
import warnings

import pytest
import torch

from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter, tiny_llava_onevision_config
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan
from prune_bench.core.strategy import BudgetWarning
from prune_bench.errors import UserError

STRATEGIES = sorted(registry().strategies)
FRAMES = 16


@pytest.fixture(scope="module")
def adapter() -> LlavaOnevisionAdapter:
    return LlavaOnevisionAdapter.from_config(tiny_llava_onevision_config(num_layers=8, image_size=64), seed=0)


@pytest.fixture(scope="module")
def sample(adapter):
    g = torch.Generator().manual_seed(0)
    size = adapter.config.vision_config.image_size
    scenes = torch.randint(0, 256, (2, size, size, 3), generator=g, dtype=torch.uint8)
    video = torch.cat([scenes[0].expand(FRAMES // 2, -1, -1, -1), scenes[1].expand(FRAMES // 2, -1, -1, -1)])
    video = (video.int() + torch.randint(-20, 21, video.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    ids = [3, 4, 5] + [adapter.config.video_token_id] * adapter.video_token_count(FRAMES) + [6, 7, 8, 9]
    return adapter.encode_ids(ids, adapter.pixels(video), [10, 11, 12, 13], capture_vision=True)


def _plan(adapter, name, keep):
    info = adapter.model_info(FRAMES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        strategy = registry().strategy(name).for_budget(keep, "layer-average", info)
    warned = any(issubclass(w.category, BudgetWarning) for w in caught)
    return PruningPlan.of(strategy.stages(info), info.num_layers), strategy, warned


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("keep", [0.2, 0.5])
def test_budget_is_met_or_warned(adapter, sample, name, keep):
    plan, _, warned = _plan(adapter, name, keep)
    result = adapter.run(sample, plan)
    achieved = result.layer_average_retention
    if name == "none":
        assert achieved == 1.0
    elif not warned:
        # 16 tokens a frame: the finest step a per-frame method can take is 1/16 of a frame
        assert achieved == pytest.approx(keep, abs=0.04), f"{name}: asked {keep}, got {achieved:.3f}"
    text = (sample.state.kind == 0).sum().item()
    assert all(c.attn_tokens - c.attn_visual >= text for c in result.counts)


@pytest.mark.parametrize("name", STRATEGIES)
def test_drop_mode_equals_mask_mode_and_is_deterministic(adapter, sample, name):
    plan, _, _ = _plan(adapter, name, 0.3)
    drop = adapter.run(sample, plan, mode="drop", max_new_tokens=4, seed=3)
    again = adapter.run(sample, plan, mode="drop", max_new_tokens=4, seed=3)
    mask = adapter.run(sample, plan, mode="mask", max_new_tokens=4, seed=3)
    assert drop.generated == again.generated and drop.option_logits == again.option_logits
    assert [c.mlp_visual for c in drop.counts] == [c.mlp_visual for c in mask.counts]
    assert drop.generated == mask.generated
    torch.testing.assert_close(
        torch.tensor(drop.option_logits), torch.tensor(mask.option_logits), atol=2e-4, rtol=1e-4
    )
    assert drop.decode_visible_visual == mask.decode_visible_visual


@pytest.mark.parametrize("name", STRATEGIES)
def test_config_rejects_unknown_fields_and_describes_itself(name):
    cls = registry().strategy(name)
    with pytest.raises(UserError, match=f"invalid options for strategy '{name}'"):
        cls(no_such_option=1)
    assert cls.summary
    assert sys.modules[cls.__module__].__doc__, f"{name}'s module must say which paper and code it follows"
    json.dumps(cls().describe())


def test_two_post_stages_at_one_layer_see_the_attention_of_the_survivors(adapter, sample):
    """A second stage at the same layer gets the columns of the tokens the first one left."""
    from prune_bench.core.stages import Stage
    from prune_bench.strategies.common.select import keep_visual_subset

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
        adapter.run(sample, plan, mode=mode)
        (full, src_a), (sub, src_b) = seen["a"][-1], seen["b"][-1]
        assert sub.shape[-1] == src_b.numel() < src_a.numel()
        torch.testing.assert_close(sub, full[..., torch.searchsorted(src_a, src_b)])
