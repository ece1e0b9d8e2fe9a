"""Analytic FLOPs checked against ``torch.utils.flop_counter.FlopCounterMode`` on tiny random models.

What the counter sees differs from the "exact" convention in one place only: eager attention multiplies
the FULL ``n x n`` score matrix (the causal mask is applied after ``Q K^T``), while "exact" counts the
causal triangle. With GQA the eager path repeats k/v to all ``H`` query heads before the matmuls, so both
count ``H`` heads. The prefill comparisons therefore add the upper triangle, ``n(n-1)/2`` (query, key)
pairs a layer, to the analytic count. We compare the decoder layers' modules only (``Qwen2Model.layers.i``),
so whatever the model runs outside them (rotary tables, norms) cannot leak in.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Model, SiglipVisionConfig, SiglipVisionModel

from prune_bench.adapters.llava_onevision import llava_onevision_7b_config, tiny_llava_onevision_config
from prune_bench.core.flops import (
    LMShape,
    decode_step_flops,
    ideal_speedup,
    lm_head_flops,
    prefill_flops,
    projector_flops,
    vision_flops,
    vision_layers_used,
)
from prune_bench.core.ledger import LayerCount

QWEN = dict(
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=2,
    vocab_size=100,
)


def tokens(attn: int, mlp: int) -> LayerCount:
    """A layer's counts where only the totals matter (FLOPs do not look at the visual split)."""
    return LayerCount(attn, 0, mlp, 0)


def _qwen_config() -> Qwen2Config:
    return Qwen2Config(**QWEN, attn_implementation="eager")


@pytest.fixture(scope="module")
def qwen() -> Qwen2Model:
    torch.manual_seed(0)
    model = Qwen2Model(_qwen_config()).eval()
    assert model.config._attn_implementation == "eager"
    return model


def _count(fn: Any) -> dict[str, int]:
    """Run ``fn`` under the flop counter; total FLOPs per module name."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}


def _layers_total(counts: dict[str, int], prefix: str, num_layers: int) -> int:
    return sum(counts.get(f"{prefix}.layers.{i}", 0) for i in range(num_layers))


def _upper_triangle(shape: LMShape, n: int) -> float:
    """What eager attention computes beyond the causal triangle: QK^T and AV over n(n-1)/2 masked pairs."""
    return 2 * 2.0 * shape.num_heads * shape.head_dim * n * (n - 1) / 2


def _cache_kwarg(model: torch.nn.Module) -> str:
    # transformers renamed `past_key_values` to `cache` (5.2x); the old name warns, and warnings are errors.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


# ------------------------------------------------------------------------------------------------ shape
def test_shape_from_config_reads_gqa_and_head_dim() -> None:
    shape = LMShape.from_config(_qwen_config())
    assert shape == LMShape(64, 128, 4, 2, 16, 2, vocab_size=100)
    explicit = Qwen2Config(**{**QWEN, "head_dim": 8})
    assert LMShape.from_config(explicit).head_dim == 8
    big = LMShape.from_config(llava_onevision_7b_config().text_config)
    assert (big.hidden_size, big.num_kv_heads, big.head_dim, big.num_layers) == (3584, 4, 128, 28)


# ------------------------------------------------------------------------------------- prefill vs counter
@pytest.mark.parametrize("n", [1, 7, 33])
def test_prefill_exact_matches_flop_counter(qwen: Qwen2Model, n: int) -> None:
    shape = LMShape.from_config(qwen.config)
    counts = _count(lambda: qwen(input_ids=torch.arange(n)[None] % 100, use_cache=False))
    layers = [tokens(n, n)] * shape.num_layers
    expected = prefill_flops(shape, layers, "exact") + shape.num_layers * _upper_triangle(shape, n)
    assert _layers_total(counts, "Qwen2Model", shape.num_layers) == pytest.approx(expected, rel=0, abs=0.5)
    # The counter attributes everything of substance to the layers (nothing else is a matmul).
    assert counts["Global"] == _layers_total(counts, "Qwen2Model", shape.num_layers)


def test_prefill_exact_splits_attention_and_mlp_tokens(qwen: Qwen2Model) -> None:
    """A "post" stage: attention on n tokens, MLP on k. Take each half from a counted run of that size."""
    shape = LMShape.from_config(qwen.config)
    n, k = 20, 6
    run_n = _count(lambda: qwen(input_ids=torch.arange(n)[None], use_cache=False))
    run_k = _count(lambda: qwen(input_ids=torch.arange(k)[None], use_cache=False))
    counted = sum(
        run_n[f"Qwen2Model.layers.{i}.self_attn"] + run_k[f"Qwen2Model.layers.{i}.mlp"]
        for i in range(shape.num_layers)
    )
    layers = [tokens(n, k)] * shape.num_layers
    expected = prefill_flops(shape, layers, "exact") + shape.num_layers * _upper_triangle(shape, n)
    assert counted == pytest.approx(expected, rel=0, abs=0.5)


def test_decode_step_matches_flop_counter_with_kv_cache(qwen: Qwen2Model) -> None:
    shape = LMShape.from_config(qwen.config)
    n = 11
    kwarg = _cache_kwarg(qwen)
    with torch.no_grad():
        cache = qwen(input_ids=torch.arange(n)[None], use_cache=True).past_key_values
    counts = _count(lambda: qwen(input_ids=torch.tensor([[3]]), use_cache=True, **{kwarg: cache}))
    # One query over n + 1 keys: no causal adjustment, eager and "exact" agree.
    expected = decode_step_flops(shape, [n + 1] * shape.num_layers)
    assert _layers_total(counts, "Qwen2Model", shape.num_layers) == pytest.approx(expected, rel=0, abs=0.5)
    # By hand, one layer: q 2*64*64, k, v 2*64*32 each, o 2*64*64, attention 2*2*4*16*12, MLP 3*2*64*128.
    per_layer = 8192 + 2 * 4096 + 8192 + 2 * 2 * 4 * 16 * 12 + 3 * 2 * 64 * 128
    assert expected == 2 * per_layer


def test_lm_head_flops_matches_flop_counter() -> None:
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(_qwen_config()).eval()
    shape = LMShape.from_config(model.config)
    counts = _count(lambda: model(input_ids=torch.arange(9)[None], use_cache=False, logits_to_keep=1))
    assert counts["Qwen2ForCausalLM.lm_head"] == lm_head_flops(shape, 1) == 2 * 64 * 100
    with pytest.raises(ValueError, match="vocab_size"):
        lm_head_flops(LMShape(64, 128, 4, 2, 16, 2))


# ----------------------------------------------------------------------------------------------- vision
def _tiny_vision_config(**overrides: Any) -> SiglipVisionConfig:
    base = tiny_llava_onevision_config().vision_config.to_dict()
    # The attention-pooling head is not part of LLaVA-OneVision's features and vision_flops excludes it.
    base.update(vision_use_head=False, attn_implementation="eager", **overrides)
    return SiglipVisionConfig(**base)


def test_vision_flops_matches_flop_counter_on_siglip() -> None:
    config = _tiny_vision_config()
    torch.manual_seed(0)
    tower = SiglipVisionModel(config).eval()
    frames = 3
    pixels = torch.randn(frames, 3, config.image_size, config.image_size)
    counts = _count(lambda: tower(pixel_values=pixels))
    assert counts["Global"] == pytest.approx(vision_flops(config, frames), rel=0, abs=0.5)
    assert vision_flops(config, frames, image_size=config.image_size) == vision_flops(config, frames)

    # hidden_states[1] needs the patch embedding and the first encoder layer only.
    first = counts["SiglipVisionModel.embeddings"] + counts["SiglipVisionModel.encoder.layers.0"]
    assert first == pytest.approx(vision_flops(config, frames, feature_layer=1), rel=0, abs=0.5)
    assert vision_flops(config, frames, feature_layer=0) == counts["SiglipVisionModel.embeddings"]


def test_vision_layers_used() -> None:
    assert vision_layers_used(26, -1) == 26
    assert vision_layers_used(26, -2) == 25
    assert vision_layers_used(26, 0) == 0
    assert vision_layers_used(26, [3, -1]) == 26
    with pytest.raises(ValueError):
        vision_layers_used(26, 27)


def test_projector_flops_matches_flop_counter() -> None:
    from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionMultiModalProjector

    config = tiny_llava_onevision_config()
    projector = LlavaOnevisionMultiModalProjector(config).eval()
    n = 2 * 16
    feats = torch.randn(2, 16, config.vision_config.hidden_size)
    counts = _count(lambda: projector(feats))
    d_in, d_out = config.vision_config.hidden_size, config.text_config.hidden_size
    assert counts["Global"] == projector_flops(d_in, d_out, d_out, n) == 2 * n * (32 * 64 + 64 * 64)


# ------------------------------------------------------------------------------------------------ paper
def test_paper_convention_hand_computed() -> None:
    shape = LMShape(hidden_size=4, intermediate_size=8, num_heads=2, num_kv_heads=1, head_dim=2, num_layers=2)
    # 4*n*d^2 + 2*n^2*d + 2*n*d*m with n=3, d=4, m=8: 192 + 72 + 192 = 456 a layer.
    assert prefill_flops(shape, [tokens(3, 3)] * 2, "paper") == 912
    # A "post" stage: FFN term on 2 tokens, 2*2*4*8 = 128.
    assert prefill_flops(shape, [tokens(3, 2)], "paper") == 192 + 72 + 128


def test_llava_onevision_7b_worked_example_from_research_notes() -> None:
    """ecosystem.md §5.1: n = 6,373 tokens, paper-style 41.6 T, exact (full n^2) 99.5 T."""
    shape = LMShape.from_config(llava_onevision_7b_config().text_config)
    n = 6373
    layers = [tokens(n, n)] * shape.num_layers
    assert prefill_flops(shape, layers, "paper") / 1e12 == pytest.approx(41.6, abs=0.05)
    exact = prefill_flops(shape, layers, "exact")
    assert (exact + shape.num_layers * _upper_triangle(shape, n)) / 1e12 == pytest.approx(99.5, abs=0.05)
    assert exact / prefill_flops(shape, layers, "paper") == pytest.approx(2.2, abs=0.05)


def test_unknown_convention_is_rejected() -> None:
    with pytest.raises(ValueError, match="convention"):
        prefill_flops(LMShape.from_config(_qwen_config()), [tokens(1, 1)], "fvcore")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tokens(-1, 0)


# ------------------------------------------------------------------------------------------ monotonicity
@pytest.mark.parametrize("convention", ["exact", "paper"])
def test_flops_drop_when_tokens_drop(convention: Any) -> None:
    shape = LMShape.from_config(llava_onevision_7b_config().text_config)
    full = prefill_flops(shape, [tokens(6000, 6000)] * 28, convention)
    previous = full
    for keep in (5000, 3000, 1000, 100, 0):
        pruned = prefill_flops(shape, [tokens(6000, 6000)] * 2 + [tokens(keep, keep)] * 26, convention)
        assert pruned < previous
        previous = pruned
    post = prefill_flops(
        shape,
        [tokens(6000, 6000)] + [tokens(6000, 3000)] + [tokens(3000, 3000)] * 26,
        convention,
    )
    pre = prefill_flops(shape, [tokens(6000, 6000)] + [tokens(3000, 3000)] * 27, convention)
    assert pre < post < full


def test_decode_and_speedup_follow_token_counts() -> None:
    shape = LMShape.from_config(llava_onevision_7b_config().text_config)
    assert decode_step_flops(shape, [1000] * 28) < decode_step_flops(shape, [6000] * 28)
    full = [tokens(6000, 6000)] * 28
    assert ideal_speedup(shape, full, full) == 1.0
    half = [tokens(6000, 6000)] * 2 + [tokens(3000, 3000)] * 26
    speedup = ideal_speedup(shape, half, full)
    assert speedup == prefill_flops(shape, full, "exact") / prefill_flops(shape, half, "exact")
    assert 1.5 < speedup < 2.0


def test_a_sparse_moe_mlp_counts_the_experts_a_token_goes_through_and_the_router() -> None:
    from types import SimpleNamespace

    from prune_bench.core.ledger import LayerCount

    config = SimpleNamespace(
        hidden_size=8,
        intermediate_size=1000,  # the dense width a MoE config also carries: not what a token runs
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=4,
        num_hidden_layers=1,
        vocab_size=10,
        num_experts=6,
        num_experts_per_tok=2,
        moe_intermediate_size=3,
        decoder_sparse_step=1,
        mlp_only_layers=[],
    )
    shape = LMShape.from_config(config)
    assert shape.mlp_width == 6
    layer = LayerCount(attn_tokens=5, attn_visual=0, mlp_tokens=4, mlp_visual=0)
    dense = LMShape.from_config(SimpleNamespace(**{**vars(config), "num_experts": 0}))
    # the same layer with a dense MLP of width 1000, minus that MLP, plus 2 experts of 3 and the router
    expected = prefill_flops(dense, [layer]) - 3 * 2.0 * 4 * 8 * 1000 + 3 * 2.0 * 4 * 8 * 6 + 2.0 * 4 * 8 * 6
    assert prefill_flops(shape, [layer]) == pytest.approx(expected)
    assert _paper_mlp(shape) == 6
    with pytest.raises(ValueError, match="dense and MoE"):
        LMShape.from_config(SimpleNamespace(**{**vars(config), "mlp_only_layers": [0]}))


def _paper_mlp(shape: LMShape) -> float:
    """The MLP width the paper convention uses: its FFN term over 2*n*d."""
    from prune_bench.core.ledger import LayerCount

    one = LayerCount(attn_tokens=0, attn_visual=0, mlp_tokens=1, mlp_visual=0)
    return prefill_flops(shape, [one], "paper") / (2.0 * shape.hidden_size)


def test_qwen3_vl_30b_a3b_counts_its_8_active_experts() -> None:
    from prune_bench.adapters.configs import qwen3_vl_30b_a3b_config

    shape = LMShape.from_config(qwen3_vl_30b_a3b_config().text_config)
    assert shape.num_experts == 128 and shape.mlp_width == 8 * 768
