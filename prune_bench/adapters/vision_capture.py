"""Capture a vision-tower layer's attention from its own q/k, with the tower's SDPA left on.

VisionZip-style methods score patches by the attention they receive in the layer whose output feeds
the projector. Switching the tower to eager attention for that materialises every layer's maps;
here forward hooks keep that one layer's query and key projections, and the scores are computed
from them only when a stage asks (chunked over frames to bound memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


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
    captured = CapturedQK(num_heads=int(getattr(attn, "num_heads", None) or attn.config.num_attention_heads))
    if not enabled or index < 0:
        yield captured
        return
    handles = [
        attn.q_proj.register_forward_hook(lambda m, i, o: captured.q.append(o.detach())),
        attn.k_proj.register_forward_hook(lambda m, i, o: captured.k.append(o.detach())),
    ]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()
