from __future__ import annotations

import math
import warnings

import pytest
import torch

from prune_bench.core.context import StageContext
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.errors import UserError
from prune_bench.session import Session
from prune_bench.strategies.dart import (
    DART,
    KEY_NORMS,
    DARTConfig,
    dart_keep_count,
    duplication_aware_keep,
    tokens_per_pivot,
)
from prune_bench.testing import assert_drop_equals_mask


def reference_keep(
    hidden: torch.Tensor, key_norm: torch.Tensor, start: int, length: int, n_img: int, n_txt: int, per: int
) -> set[int]:
    """The official ``get_retained_image_token`` re-derived with Python lists and ``math``: the visual
    span ``[start, start + length)``, the text after it, pivots walked image first then text, each by
    descending key norm."""
    n = hidden.shape[0]
    norms = key_norm.tolist()
    span = list(range(start, start + length))
    after = list(range(start + length, n))
    image = sorted(span, key=lambda i: -norms[i])[:n_img]
    text = sorted(after, key=lambda i: -norms[i])[:n_txt]
    vec = hidden.double().tolist()

    def cos(a: int, b: int) -> float:
        dot = sum(x * y for x, y in zip(vec[a], vec[b], strict=True))
        return dot / (math.sqrt(sum(x * x for x in vec[a])) * math.sqrt(sum(y * y for y in vec[b])))

    kept, valid = set(image), [i for i in span if i not in image]
    for pivot in image + text:
        taken = sorted(valid, key=lambda i: cos(pivot, i))[:per]
        kept.update(taken)
        valid = [i for i in valid if i not in taken]
    return kept


def _ctx(memory: dict | None = None) -> StageContext:
    return StageContext(
        hook="layer",
        num_layers=4,
        generator=torch.Generator(),
        memory=memory or {},
        layer=2,
        _final_norm=lambda h: h,
    )


def _state(n_before: int, n_visual: int, n_after: int, d: int, seed: int) -> TokenState:
    n = n_before + n_visual + n_after
    g = torch.Generator().manual_seed(seed)
    kind = torch.zeros(n, dtype=torch.int8)
    kind[n_before : n_before + n_visual] = int(TokenKind.VISUAL)
    frame = torch.full((n,), -1)
    frame[n_before : n_before + n_visual] = torch.arange(n_visual) // 4
    row = torch.where(frame >= 0, torch.zeros(n, dtype=torch.long), frame)
    col = torch.where(frame >= 0, torch.arange(n) % 4, frame)
    return TokenState.from_layout(torch.randn(n, d, generator=g), kind, frame, row, col)


def test_tokens_per_pivot_is_the_codes_top_k_for_qwen_and_for_llava():
    # Qwen: int(576 * (1 - 0.778) / 8) = int(15.98) = 15; LLaVA scripts: floor(128 / 8) = 16
    assert tokens_per_pivot(576, DARTConfig()) == 15
    assert tokens_per_pivot(576, DARTConfig(max_num_truncation=128)) == 16
    assert dart_keep_count(576, DARTConfig()) == 4 + 8 * 15
    assert dart_keep_count(576, DARTConfig(max_num_truncation=128)) == 132
    assert dart_keep_count(20, DARTConfig(reduction_ratio=0.0)) == 20  # capped by what exists
    assert dart_keep_count(100, DARTConfig(reduction_ratio=1.0)) == 4  # only the image pivots


def test_hand_case_pivot_by_key_norm_then_the_least_similar_tokens():
    # visual tokens 1..6 (directions in the plane), text 0 and 7, 8
    angles = [0.0, 0.0, 10.0, 80.0, 95.0, 170.0, 180.0, 0.0, 90.0]
    hidden = torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in angles])
    key_norm = torch.tensor([9.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0, 0.5, 3.0])
    visual, after = torch.arange(1, 7), torch.tensor([7, 8])
    cfg = DARTConfig(pivot_image_tokens=1, pivot_text_tokens=1, max_num_truncation=4)  # 2 per pivot
    kept = duplication_aware_keep(hidden, key_norm, visual, after, cfg)
    # image pivot: token 2 (norm 5, at 10 deg): least similar are 6 (180) and 5 (170);
    # text pivot: token 8 (norm 3 beats 0.5, at 90 deg): of 1 (0), 3 (80) and 4 (95) the least similar
    # are 1 (cos 0) and 3 (cos 10 deg < cos 5 deg)
    assert visual[kept].tolist() == [1, 2, 3, 5, 6]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("pivots", [(4, 4), (2, 1), (0, 3)])
def test_selection_matches_the_official_algorithm_rederived_in_loops(seed, pivots):
    n_before, n_visual, n_after, d = 3, 40, 6, 16
    state = _state(n_before, n_visual, n_after, d, seed)
    key_norm = torch.rand(len(state), generator=torch.Generator().manual_seed(100 + seed))
    cfg = DARTConfig(pivot_image_tokens=pivots[0], pivot_text_tokens=pivots[1], reduction_ratio=0.6)
    kept = duplication_aware_keep(state.hidden, key_norm, state.visual_index, torch.arange(43, 49), cfg)
    per = tokens_per_pivot(n_visual, cfg)
    expected = reference_keep(state.hidden, key_norm, n_before, n_visual, *pivots, per)
    assert set(state.visual_index[kept].tolist()) == expected
    assert int(kept.sum()) == dart_keep_count(n_visual, cfg)


def _unit(*degrees: float) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in degrees])


def test_the_earlier_pivot_takes_the_token_both_pivots_want_first():
    # visual 2, 3, 4 at 200, 250, 150 deg; text pivots 5 (0 deg, key norm 2) and 6 (30 deg, norm 1)
    hidden = _unit(0, 0, 200, 250, 150, 0, 30)
    visual, after = torch.arange(2, 5), torch.tensor([5, 6])
    cfg = DARTConfig(pivot_image_tokens=0, pivot_text_tokens=2, max_num_truncation=2)  # 1 each
    kept = duplication_aware_keep(hidden, torch.tensor([0, 0, 1, 1, 1, 2.0, 1.0]), visual, after, cfg)
    # both want 200 deg; pivot 5 walks first and takes it, pivot 6 then takes 250 (cos 220 < cos 120)
    assert visual[kept].tolist() == [2, 3]
    # the other order (pivot 6 first) leaves pivot 5 with 150 deg (cos 150 < cos 250)
    swapped = duplication_aware_keep(hidden, torch.tensor([0, 0, 1, 1, 1, 1.0, 2.0]), visual, after, cfg)
    assert visual[swapped].tolist() == [2, 4]


def test_stages_store_layer_k_minus_1_key_norms_and_prune_before_layer_k_keeping_text_and_positions():
    state = _state(2, 24, 5, 8, seed=3)
    strategy = DART(reduction_ratio=0.5)
    stages = strategy.stages(
        ModelInfo(num_layers=6, num_frames=6, tokens_per_frame=4, hidden_size=8, family="x")
    )
    assert [(s.layer, s.site) for s in stages] == [(1, "post"), (2, "pre")]
    keys = torch.rand(2, len(state), 4, generator=torch.Generator().manual_seed(0))
    memory: dict = {}
    post = StageContext("layer", 6, torch.Generator(), memory, layer=1, _keys=lambda st: keys)
    assert stages[0].fn(state, post) is state
    torch.testing.assert_close(memory[KEY_NORMS][1], keys.abs().sum(dim=(0, 2)))
    out = stages[1].fn(state, _ctx(memory))
    assert out.num_visual == dart_keep_count(24, strategy.config)
    text = state.kind != int(TokenKind.VISUAL)
    assert torch.equal(out.source[out.kind != int(TokenKind.VISUAL)], torch.nonzero(text).flatten())
    assert torch.equal(out.position, state.position[out.source])


def _info(num_layers: int = 8) -> ModelInfo:
    return ModelInfo(num_layers=num_layers, num_frames=16, tokens_per_frame=16, hidden_size=8, family="x")


def test_for_budget_maps_keep_onto_the_reduction_ratio_like_fastv():
    assert DART.for_budget(0.3, "input", _info()).config.reduction_ratio == pytest.approx(0.7)
    # layer average over 8 layers with K = 2: (2 + 6 f) / 8 = 0.5 -> f = 1/3
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)
        assert DART.for_budget(0.5, "layer-average", _info()).config.reduction_ratio == pytest.approx(2 / 3)
    with pytest.warns(BudgetWarning, match="K=2"):
        assert DART.for_budget(0.2, "layer-average", _info()).config.reduction_ratio == 1.0


def test_bad_layer_or_no_pivot_is_one_user_error_line():
    with pytest.raises(UserError, match="below the model's 8 layers"):
        DART(k=8).stages(_info())
    with pytest.raises(UserError, match="at least one pivot"):
        DART(pivot_image_tokens=0, pivot_text_tokens=0).stages(_info())


def test_on_the_tiny_model_the_key_norms_and_normed_states_are_those_of_hf_layer_k_minus_1(
    tiny_adapter, tiny_sample
):
    ids, pixels, sample = tiny_sample
    seen: dict[str, torch.Tensor] = {}

    class Spy(DART):
        def duplication_prune(self, state: TokenState, ctx: StageContext) -> TokenState:
            seen["normed"], seen["source"] = ctx.final_norm(state.hidden), state.source
            return super().duplication_prune(state, ctx)

    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(Spy(reduction_ratio=0.6).stages(info), info.num_layers)
    result = tiny_adapter.prefill(sample, plan)
    with torch.no_grad():
        out = tiny_adapter.model(
            **tiny_adapter.reference_inputs(ids, pixels), use_cache=True, output_hidden_states=True
        )
    hf_keys = out.past_key_values.layers[1].keys[0]  # layer K-1 = 1, post-RoPE, [KV, N, hd]
    _, norms = result.memory[KEY_NORMS]
    torch.testing.assert_close(norms, hf_keys.abs().sum(dim=(0, 2)), atol=1e-4, rtol=1e-4)
    lm_norm = tiny_adapter.model.model.language_model.norm
    torch.testing.assert_close(seen["normed"], lm_norm(out.hidden_states[2][0]), atol=1e-4, rtol=1e-4)
    kept = result.state
    assert kept.num_visual == dart_keep_count(sample.state.num_visual, DARTConfig(reduction_ratio=0.6))


@pytest.mark.parametrize("keep", [0.25, 0.5])
def test_achieved_retention_follows_the_codes_count(tiny_adapter, tiny_sample, keep):
    _, _, sample = tiny_sample
    session = Session(tiny_adapter, "dart", keep=keep, unit="input", num_frames=6)
    result = session.answer(sample)
    n = sample.state.num_visual
    kept = [c.attn_visual for c in result.counts]
    assert kept[:2] == [n, n] and set(kept[2:]) == {dart_keep_count(n, session.strategy.config)}
    assert abs(kept[2] / n - keep) <= (4 + 7) / n  # 4 pivots more, up to 7 fewer by the floor


@pytest.mark.parametrize("options", [{}, {"pivot_text_tokens": 0}])
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(DART.for_budget(0.3, "input", info, **options).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)
