from __future__ import annotations

import pytest
import torch

from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
from prune_bench.core.context import StageContext
from prune_bench.core.stages import PruningPlan, Stage
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.strategies.simple import RandomPruning


def _hf_greedy_logits(
    adapter: LlavaOnevisionAdapter, ids: list[int], pixels: torch.Tensor, steps: int
) -> list[torch.Tensor]:
    """The unmodified HF model, recomputing the whole prompt each step (no cache tricks)."""
    out, seq = [], list(ids)
    with torch.no_grad():
        for _ in range(steps):
            logits = adapter.model(input_ids=torch.tensor([seq]), pixel_values_videos=pixels[None]).logits[
                0, -1
            ]
            out.append(logits)
            seq.append(int(logits.argmax()))
    return out


def _our_greedy_logits(
    adapter: LlavaOnevisionAdapter, sample, plan: PruningPlan, mode: str, steps: int
) -> list[torch.Tensor]:
    pre = adapter.runner.prefill(sample.state, plan, mode=mode, max_new_tokens=steps)
    out = [pre.logits]
    token, pos = int(pre.logits.argmax()), pre.state.next_position
    from prune_bench.core.timing import Clock

    for step in range(steps - 1):
        logits = adapter.runner.decode_step(token, pos + step, step, pre, plan, Clock("cpu"))
        out.append(logits)
        token = int(logits.argmax())
    return out


def test_no_pruning_reproduces_hf_logits_for_prefill_and_five_decode_steps(tiny_adapter, tiny_sample):
    ids, pixels, sample = tiny_sample
    ref = _hf_greedy_logits(tiny_adapter, ids, pixels, 6)
    ours = _our_greedy_logits(tiny_adapter, sample, PruningPlan(), "drop", 6)
    for r, o in zip(ref, ours, strict=True):
        torch.testing.assert_close(o, r, atol=1e-4, rtol=1e-4)


def _random_plan(adapter, layer):
    info = adapter.model_info(6)
    return PruningPlan.of(RandomPruning(keep=0.4, layer=layer).stages(info), info.num_layers)


def test_drop_mode_matches_mask_mode_for_random_at_input_and_at_layer_2(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    for layer in (None, 2):
        plan = _random_plan(tiny_adapter, layer)
        drop = _our_greedy_logits(tiny_adapter, sample, plan, "drop", 4)
        mask = _our_greedy_logits(tiny_adapter, sample, plan, "mask", 4)
        for d, m in zip(drop, mask, strict=True):
            torch.testing.assert_close(d, m, atol=1e-4, rtol=1e-4)


def test_kept_tokens_keep_original_positions_and_each_layer_caches_what_survived(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    plan = _random_plan(tiny_adapter, 1)
    pre = tiny_adapter.runner.prefill(sample.state, plan, mode="drop")
    final = pre.state
    assert torch.equal(final.position, sample.state.position[final.source])
    assert final.num_visual < sample.state.num_visual
    assert final.next_position == len(sample.state)
    for cache, count in zip(pre.caches, pre.counts, strict=True):
        assert cache.length == count.attn_tokens
    # layer 1's attention saw everything; its MLP and later layers only the survivors
    assert pre.counts[1].attn_tokens == len(sample.state)
    assert pre.counts[1].mlp_tokens == len(final) == pre.counts[2].attn_tokens


def test_attention_rows_equal_eager_attention_rows(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    captured: dict[int, torch.Tensor] = {}

    def spy(state: TokenState, ctx: StageContext) -> TokenState:
        captured[ctx.layer] = ctx.last_token_attention(state, num_queries=2)
        return state

    layers = range(tiny_adapter.runner.num_layers)
    plan = PruningPlan.of([Stage("spy", "layer", spy, layer=i) for i in layers], len(layers))
    tiny_adapter.runner.prefill(sample.state, plan)
    lm = tiny_adapter.lm
    previous = lm.config._attn_implementation
    lm.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            out = lm(inputs_embeds=sample.state.hidden[None], output_attentions=True)
    finally:
        lm.config._attn_implementation = previous
    for i in layers:
        torch.testing.assert_close(captured[i], out.attentions[i][0, :, -2:, :].float(), atol=1e-5, rtol=1e-4)


def test_layout_is_read_from_config_and_ids(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    st = sample.state
    assert st.num_visual == 6 * tiny_adapter.pooled_grid**2
    assert int((st.kind == TokenKind.NEWLINE).sum()) == 1
    assert st.frame_grid == (tiny_adapter.pooled_grid, tiny_adapter.pooled_grid)
    assert st.num_frames == 6
    first_visual = int(st.visual_index[0])
    assert first_visual == 4  # right after the 4 text ids of the fixture prompt


def test_a_stage_that_drops_text_without_declaring_it_fails_the_prefill(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample

    def drop_first_text(state: TokenState, ctx: StageContext) -> TokenState:
        first_text = int(torch.nonzero(state.kind != TokenKind.VISUAL)[0])
        keep = torch.ones(len(state), dtype=torch.bool)
        keep[first_text] = False
        return state.keep_mask(keep)

    for mode in ("drop", "mask"):
        plan = PruningPlan.of(
            [Stage("greedy", "layer", drop_first_text, layer=1)], tiny_adapter.runner.num_layers
        )
        with pytest.raises(RuntimeError, match="'greedy' removed non-visual tokens without declaring"):
            tiny_adapter.runner.prefill(sample.state, plan, mode=mode)
        declared = PruningPlan.of(
            [Stage("declared", "layer", drop_first_text, layer=1, touches_text=True)],
            tiny_adapter.runner.num_layers,
        )
        assert (
            len(tiny_adapter.runner.prefill(sample.state, declared, mode=mode).state) == len(sample.state) - 1
        )
