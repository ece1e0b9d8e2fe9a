"""What is LLaVA-OneVision's own: its layout (one newline token closing the video) and the decoder's
check on stages that drop text. The HF logits, drop == mask, positions, caches and attention rows are
the adapter contract's (tests/adapters/test_adapter_contract.py), on every adapter."""

from __future__ import annotations

import pytest
import torch

from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
from prune_bench.core.context import StageContext
from prune_bench.core.stages import PruningPlan, Stage
from prune_bench.core.state import TokenKind, TokenState


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


def test_tiny_architectures_build_at_the_contracts_size():
    assert set(LlavaOnevisionAdapter.tiny_architectures) == {"tiny-llava-onevision"}
    adapter = LlavaOnevisionAdapter.tiny(num_layers=2)
    info = adapter.model_info(16)
    assert (info.num_layers, info.tokens_per_frame, adapter.frame_size) == (2, 16, (64, 64))
