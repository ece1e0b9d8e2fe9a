"""Capture a vision-tower layer's attention from its own q/k, with the tower's SDPA left on.

VisionZip-style methods score patches by the attention they receive in the layer whose output feeds
the projector. Switching the tower to eager attention for that materialises every layer's maps;
here hooks keep that one layer's inputs, and the scores are computed from them only when a stage
asks. Two kinds of hook:

* SigLIP / CLIP (LLaVA-OneVision): :func:`capture_vision_attention` keeps the outputs of the layer's
  ``q_proj`` / ``k_proj`` (:class:`CapturedQK`; scores chunked over frames to bound memory); InternViT
  (InternVL3) the outputs of its ``q_norm`` / ``k_norm`` through the same :func:`capture_projections`;
* Qwen2-VL's and Qwen2.5-VL's ViT: :func:`capture_block_attention` keeps a block's attention inputs
  (hidden states, ``cu_seqlens``, rotary embeddings) and rebuilds q/k from its fused ``qkv``
  (:class:`CapturedBlockInput`; attention per frame pair, as the tower attends); Qwen2.5-VL's tower
  runs on window-ordered merge units, and ``unit_order`` (its window index) puts them back in the
  original patch order.

Either way ``received`` is the attention a patch receives, mean over heads and queries, and ``keys``
the head-averaged keys; the adapter pools both exactly as it pools the features.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prune_bench.core.attention import rotate_half
from prune_bench.core.context import VisionAttention


@dataclass
class CapturedQK:
    num_heads: int
    q: list[torch.Tensor] = field(default_factory=list)
    k: list[torch.Tensor] = field(default_factory=list)

    def result(self, frames_per_chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean attention received per patch ``[T, P]``, head-averaged keys ``[T, P, hd]``)."""
        if not self.q:
            raise RuntimeError("the vision tower's attention was not captured")
        q, k = torch.cat(self.q), torch.cat(self.k)
        t, p, width = k.shape
        hd = width // self.num_heads
        qh = q.view(t, p, self.num_heads, hd).transpose(1, 2)
        kh = k.view(t, p, self.num_heads, hd).transpose(1, 2)
        received = []
        for s in range(0, t, frames_per_chunk):
            scores = torch.matmul(
                qh[s : s + frames_per_chunk].float(), kh[s : s + frames_per_chunk].float().transpose(-1, -2)
            )
            attn = torch.softmax(scores * hd**-0.5, dim=-1)  # [t, H, P, P]
            received.append(attn.mean(dim=(1, 2)))  # mean over heads and over queries
        return torch.cat(received), kh.mean(dim=1)


def _encoder_layers(tower: nn.Module) -> nn.ModuleList:
    model = getattr(tower, "vision_model", tower)
    return model.encoder.layers  # type: ignore[no-any-return]


@contextmanager
def capture_vision_attention(tower: nn.Module, feature_layer: int, *, enabled: bool) -> Iterator[CapturedQK]:
    """While active, record q/k of the encoder layer that produces ``hidden_states[feature_layer]``."""
    layers = _encoder_layers(tower)
    # hidden_states[0] is the patch embedding, hidden_states[i] the output of encoder layer i-1.
    index = (feature_layer % (len(layers) + 1)) - 1
    attn = layers[index].self_attn
    num_heads = int(getattr(attn, "num_heads", None) or attn.config.num_attention_heads)
    with capture_projections(attn.q_proj, attn.k_proj, num_heads, enabled=enabled and index >= 0) as captured:
        yield captured


@contextmanager
def capture_projections(q: nn.Module, k: nn.Module, num_heads: int, *, enabled: bool) -> Iterator[CapturedQK]:
    """While active, record the outputs of the modules that give a layer's queries and keys (``[T, P,
    heads * hd]``, before the head split): SigLIP's ``q_proj`` / ``k_proj``, InternViT's ``q_norm`` /
    ``k_norm``."""
    captured = CapturedQK(num_heads=num_heads)
    if not enabled:
        yield captured
        return
    handles = [
        q.register_forward_hook(lambda m, i, o: captured.q.append(o.detach())),
        k.register_forward_hook(lambda m, i, o: captured.k.append(o.detach())),
    ]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


@dataclass
class CapturedBlockInput:
    """The inputs of a Qwen2-VL ViT block's attention, kept by a pre-hook; scores are computed when asked.

    ``received`` is the attention each patch receives inside its own frame pair (the tower attends per
    temporal patch), mean over heads and queries, from the block's own post-RoPE q/k; ``keys`` are the
    pre-RoPE keys averaged over heads (content, not position). Both are then averaged over each
    ``merge_unit`` consecutive patches, which is exactly the group the merger turns into one token.
    ``unit_order``: the merge units' order inside the tower, when it is not the original one
    (Qwen2.5-VL's ``window_index``: tower position ``i`` holds original unit ``unit_order[i]``); the
    result is put back in the original order, the order of the merged features.
    """

    attn: nn.Module
    merge_unit: int
    unit_order: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    cu_seqlens: torch.Tensor | None = None
    rope: tuple[torch.Tensor, torch.Tensor] | None = None

    def hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.hidden = (args[0] if args else kwargs["hidden_states"]).detach()
        self.cu_seqlens = kwargs["cu_seqlens"] if "cu_seqlens" in kwargs else args[1]
        self.rope = kwargs.get("position_embeddings")

    def qkv(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(post-RoPE q, post-RoPE k, v, pre-RoPE k), each ``[L, heads, hd]`` in float32."""
        if self.hidden is None or self.rope is None:
            raise RuntimeError("the vision tower's attention was not captured")
        n, heads = self.hidden.shape[0], int(self.attn.num_heads)
        q, k, v = self.attn.qkv(self.hidden).float().reshape(n, 3, heads, -1).unbind(1)
        cos, sin = (x.float()[:, None] for x in self.rope)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin, v, k

    def segments(self) -> Iterator[tuple[int, int]]:
        assert self.cu_seqlens is not None
        bounds = self.cu_seqlens.tolist()
        yield from zip(bounds[:-1], bounds[1:], strict=True)

    def probs(self, q: torch.Tensor, k: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Softmax attention of one segment, ``[heads, S, S]``."""
        scores = torch.einsum("qhd,khd->hqk", q[start:end], k[start:end]) * float(self.attn.scaling)
        return torch.softmax(scores, dim=-1)

    def result(self) -> VisionAttention:
        q, k, _, k_raw = self.qkv()
        received = torch.cat([self.probs(q, k, s, e).mean(dim=(0, 1)) for s, e in self.segments()])
        frames = len(self.cu_seqlens) - 1  # type: ignore[arg-type]
        mu = self.merge_unit
        received = received.view(-1, mu).mean(-1)
        keys = k_raw.mean(dim=1).view(received.shape[0], mu, -1).mean(1)
        if self.unit_order is not None:  # windows never cross a frame pair, so segments stay frames
            original = torch.argsort(self.unit_order.to(received.device))
            received, keys = received[original], keys[original]
        return VisionAttention(received=received.view(frames, -1), keys=keys.view(frames, -1, keys.shape[-1]))


@contextmanager
def capture_block_attention(
    attn: nn.Module, merge_unit: int, *, enabled: bool, unit_order: torch.Tensor | None = None
) -> Iterator[CapturedBlockInput | None]:
    """While active, keep the inputs of the ViT block attention ``attn`` (None when not ``enabled``);
    ``unit_order`` as in :class:`CapturedBlockInput`."""
    if not enabled:
        yield None
        return
    captured = CapturedBlockInput(attn, merge_unit, unit_order=unit_order)
    handle = attn.register_forward_pre_hook(captured.hook, with_kwargs=True)
    try:
        yield captured
    finally:
        handle.remove()
