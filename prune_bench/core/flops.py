"""Analytic FLOPs for the language model, the SigLIP vision tower and the projector.

All counts come from the model config and *measured per-layer token counts*, so a strategy that prunes in
several stages, or whose ratio depends on the input, is counted for what it actually ran.

Two conventions for the language model's prefill (FastV, PyramidDrop and DyCoke publish the second):

``"exact"`` -- FLOPs with 1 multiply-accumulate = 2 FLOPs, per decoder layer of a Qwen2-style model
(GQA attention, SwiGLU MLP), with ``n`` the layer's attention tokens and ``n_mlp`` its MLP tokens:

* projections: q ``2*n*d*(H*hd)``, k and v ``2*n*d*(KV*hd)`` each, o ``2*n*(H*hd)*d``;
* attention: the CAUSAL triangle, query ``i`` sees ``i+1`` keys, so ``Q K^T`` costs
  ``2*H*hd*n(n+1)/2`` and ``A V`` the same again. This is the work a causal kernel (FlashAttention,
  SDPA with ``is_causal``) needs; eager attention computes the full ``n x n`` square and
  ``torch.utils.flop_counter`` counts the square (``4*H*hd*n^2``);
* MLP: gate, up and down projections, ``3 * 2*n_mlp*d*m``; for a sparse-MoE MLP (Qwen3-VL-30B-A3B)
  ``m`` is the width of the experts a token is routed to (``experts_per_token * expert_size``) and the
  router adds ``2*n_mlp*d*experts``: the work done, not the parameters held.

Norms, RoPE, softmax, activations, residual adds and biases are ignored (all ``O(n*d)``, well under 1%
of the total). The embedding lookup costs nothing and the ``lm_head`` is EXCLUDED from
:func:`prefill_flops` and :func:`decode_step_flops`; :func:`lm_head_flops` gives it separately (HF
generation applies it to the last prefill token only, ``2*d*vocab`` FLOPs a token).

``"paper"`` -- the formula FastV, PyramidDrop, DyCoke and HoliTom publish, per layer
``4*n*d^2 + 2*n^2*d + 2*n*d*m``. It assumes multi-head attention (k and v as wide as q), a two-matrix
FFN, full (non-causal) attention and counts one MAC as one FLOP, so it comes out about 2.4x below
"exact" for LLaVA-OneVision-7B. We use ``n = attn_tokens`` in the first two terms and
``n = mlp_tokens`` in the FFN term, so that a stage pruning between attention and MLP is credited; when
the two are equal this is exactly the published formula.

Vision side (:func:`vision_flops`, :func:`projector_flops`) is always "exact" (2 FLOPs a MAC): the
patch-embedding convolution plus bidirectional SigLIP encoder layers (full ``n x n`` attention), biases,
norms and GELU ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from prune_bench.core.ledger import LayerCount

Convention = Literal["exact", "paper"]
CONVENTIONS: tuple[Convention, ...] = ("exact", "paper")


@dataclass(frozen=True)
class LMShape:
    """The dimensions of a Qwen2-style decoder that the FLOP count needs."""

    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    num_layers: int
    vocab_size: int = 0  # only used by lm_head_flops
    #: a sparse-MoE MLP in every layer (Qwen3-VL-30B-A3B): experts in all, experts a token, each one's
    #: width; 0: a dense MLP of ``intermediate_size``
    num_experts: int = 0
    experts_per_token: int = 0
    expert_size: int = 0

    @property
    def mlp_width(self) -> int:
        """The MLP width a token goes through: its active experts' widths summed for MoE."""
        return self.experts_per_token * self.expert_size if self.num_experts else self.intermediate_size

    @classmethod
    def from_config(cls, text_config: Any) -> LMShape:
        """Read a Hugging Face ``Qwen2Config`` (or any config with the same field names)."""
        heads = text_config.num_attention_heads
        kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
        head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
        experts = getattr(text_config, "num_experts", 0) or 0
        if experts and (
            getattr(text_config, "mlp_only_layers", None)
            or getattr(text_config, "decoder_sparse_step", 1) != 1
        ):
            raise ValueError(
                "FLOPs of a model mixing dense and MoE layers are not counted (every layer must be sparse)"
            )
        return cls(
            hidden_size=text_config.hidden_size,
            intermediate_size=text_config.intermediate_size,
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            num_layers=text_config.num_hidden_layers,
            vocab_size=getattr(text_config, "vocab_size", 0) or 0,
            num_experts=experts,
            experts_per_token=(getattr(text_config, "num_experts_per_tok", 0) or 0) if experts else 0,
            expert_size=(getattr(text_config, "moe_intermediate_size", 0) or 0) if experts else 0,
        )


# ------------------------------------------------------------------------------------------- language model
def _projection_flops(shape: LMShape, n: int) -> float:
    """q, k, v and o projections of ``n`` tokens (GQA-aware)."""
    d, q_width, kv_width = (
        shape.hidden_size,
        shape.num_heads * shape.head_dim,
        shape.num_kv_heads * shape.head_dim,
    )
    return 2.0 * n * d * (q_width + 2 * kv_width) + 2.0 * n * q_width * d


def _mlp_flops(shape: LMShape, n: int) -> float:
    """SwiGLU MLP (gate, up, down) of ``n`` tokens; for MoE the experts each token is routed to, plus
    the router's ``d x experts`` projection (the routing softmax and top-k ignored, as norms are)."""
    router = 2.0 * n * shape.hidden_size * shape.num_experts
    return 3 * 2.0 * n * shape.hidden_size * shape.mlp_width + router


def _attention_flops(shape: LMShape, query_key_pairs: float) -> float:
    """``Q K^T`` plus ``A V`` over ``query_key_pairs`` (query, key) pairs, all query heads."""
    return 2 * 2.0 * shape.num_heads * shape.head_dim * query_key_pairs


def _exact_layer(shape: LMShape, layer: LayerCount) -> float:
    n = layer.attn_tokens
    causal_pairs = n * (n + 1) / 2
    return (
        _projection_flops(shape, n)
        + _attention_flops(shape, causal_pairs)
        + _mlp_flops(shape, layer.mlp_tokens)
    )


def _paper_layer(shape: LMShape, layer: LayerCount) -> float:
    d, m, n = shape.hidden_size, shape.mlp_width, layer.attn_tokens
    return 4.0 * n * d * d + 2.0 * n * n * d + 2.0 * layer.mlp_tokens * d * m


def prefill_flops(shape: LMShape, layers: Sequence[LayerCount], convention: Convention = "exact") -> float:
    """Prefill FLOPs of the decoder layers, summed over ``layers`` (one entry per layer that ran).

    ``convention`` is ``"exact"`` (GQA, SwiGLU, causal triangle, 2 FLOPs a MAC) or ``"paper"``
    (``4nd^2 + 2n^2d + 2ndm`` a layer); see the module docstring. The ``lm_head`` is excluded.
    """
    if convention == "exact":
        return sum((_exact_layer(shape, layer) for layer in layers), 0.0)
    if convention == "paper":
        return sum((_paper_layer(shape, layer) for layer in layers), 0.0)
    raise ValueError(f"unknown FLOPs convention {convention!r}; expected one of {CONVENTIONS}")


def decode_step_flops(shape: LMShape, kv_lengths: Sequence[int]) -> float:
    """Exact FLOPs of one decoded token, ``kv_lengths[l]`` = layer ``l``'s KV length after appending it.

    Projections and MLP for one token, plus attention of one query over ``kv_lengths[l]`` keys. The
    ``lm_head`` is excluded (add :func:`lm_head_flops` for one token).
    """
    per_token = _projection_flops(shape, 1) + _mlp_flops(shape, 1)
    return sum((per_token + _attention_flops(shape, kv) for kv in kv_lengths), 0.0)


def lm_head_flops(shape: LMShape, n_tokens: int = 1) -> float:
    """FLOPs of the output projection for ``n_tokens`` tokens (``2*d*vocab`` each); needs ``vocab_size``."""
    if shape.vocab_size <= 0:
        raise ValueError("LMShape.vocab_size is not set")
    return 2.0 * n_tokens * shape.hidden_size * shape.vocab_size


def ideal_speedup(
    shape: LMShape, pruned_layers: Sequence[LayerCount], full_layers: Sequence[LayerCount]
) -> float:
    """Exact prefill FLOPs of ``full_layers`` over those of ``pruned_layers`` (the speedup FLOPs promise)."""
    pruned = prefill_flops(shape, pruned_layers, "exact")
    if pruned <= 0:
        raise ValueError("pruned prefill has no FLOPs")
    return prefill_flops(shape, full_layers, "exact") / pruned


# ------------------------------------------------------------------------------------------------- vision
def vision_layers_used(num_hidden_layers: int, feature_layer: int | Sequence[int] = -1) -> int:
    """How many encoder layers ``hidden_states[feature_layer]`` needs.

    ``hidden_states`` has ``num_hidden_layers + 1`` entries (index 0 is the embedding output), so index
    ``k >= 0`` needs ``k`` layers and ``-1`` needs all of them. A list (multi-layer features) needs the
    deepest one.
    """
    indices = [feature_layer] if isinstance(feature_layer, int) else list(feature_layer)
    if not indices:
        raise ValueError("feature_layer is empty")
    used = []
    for index in indices:
        k = index if index >= 0 else num_hidden_layers + 1 + index
        if not 0 <= k <= num_hidden_layers:
            raise ValueError(f"feature layer {index} is out of range for {num_hidden_layers} layers")
        used.append(k)
    return max(used)


def vision_flops(
    vision_config: Any,
    num_frames: int,
    image_size: int | None = None,
    feature_layer: int | Sequence[int] = -1,
) -> float:
    """Exact FLOPs of a SigLIP vision tower on ``num_frames`` images of ``image_size`` pixels a side.

    Counts the patch-embedding convolution and the encoder layers up to ``hidden_states[feature_layer]``
    (LLaVA-OneVision's ``vision_feature_layer``, default -1 = all layers). Excluded: the
    ``post_layernorm`` and the attention-pooling head (``vision_use_head``), whose outputs LLaVA-OneVision
    does not use. Note that HF's tower runs every layer even when an earlier ``feature_layer`` is used;
    this function counts the layers the features need.
    """
    size = image_size or vision_config.image_size
    p, d, m = vision_config.patch_size, vision_config.hidden_size, vision_config.intermediate_size
    channels = getattr(vision_config, "num_channels", 3)
    n = (size // p) ** 2  # patches a frame
    layers = vision_layers_used(vision_config.num_hidden_layers, feature_layer)
    patch_embed = 2.0 * n * channels * p * p * d
    per_layer = 4 * 2.0 * n * d * d + 2 * 2.0 * n * n * d + 2 * 2.0 * n * d * m  # qkvo, QK^T + AV, fc1 + fc2
    return num_frames * (patch_embed + layers * per_layer)


def projector_flops(in_dim: int, hidden: int, out: int, n_tokens: int) -> float:
    """Exact FLOPs of the 2-layer GELU MLP projector (``in_dim -> hidden -> out``) on ``n_tokens`` tokens.

    LLaVA-OneVision projects every patch of every frame (``num_frames * (image_size // patch_size)**2``
    tokens) before pooling them.
    """
    return 2.0 * n_tokens * (in_dim * hidden + hidden * out)
