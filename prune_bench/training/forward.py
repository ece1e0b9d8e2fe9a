"""The training forward pass: next-token logits at the answer position, computed as the adapter
encodes a video (vision tower, projector, 2x2 pooling, one newline token after all frames)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F


def answer_logits(
    model: Any, pixels: torch.Tensor, ids: torch.Tensor, last: torch.Tensor, video_token_id: int
) -> torch.Tensor:
    """Next-token logits at each prompt's last position, computed as the adapter encodes a video:
    vision tower, projector, 2x2 pooling, one newline token after all frames."""
    inner = model.model
    b = ids.shape[0]
    feats = inner.vision_tower(pixels, output_hidden_states=True).hidden_states[
        model.config.vision_feature_layer
    ]
    feats = pool_video(inner, inner.multi_modal_projector(feats))  # [B*T, P, D]
    d = feats.shape[-1]
    feats = feats.reshape(b, -1, d)
    newline = inner.image_newline.to(feats.dtype)[None, None].expand(b, 1, d)
    video = torch.cat([feats, newline], dim=1)
    embeds = inner.language_model.embed_tokens(ids)
    slots = (ids == video_token_id)[..., None].expand_as(embeds)
    embeds = embeds.masked_scatter(slots, video.to(embeds.dtype))
    hidden = inner.language_model(inputs_embeds=embeds, use_cache=False).last_hidden_state
    return model.lm_head(hidden[torch.arange(b, device=ids.device), last])


def pool_video(inner: Any, feats: torch.Tensor) -> torch.Tensor:
    """LLaVA-OneVision's ``apply_pooling`` (bilinear resize of the patch grid to ``ceil(g/2)``).

    For an even grid, bilinear halving with ``align_corners=False`` is exactly a 2x2 average, which
    CUDA computes far faster than ``upsample_bilinear2d`` (300 ms a batch on an H100 in bf16)."""
    n, p, d = feats.shape
    g = math.isqrt(p)
    if g * g != p or g % 2:
        return inner.apply_pooling(feats)
    grid = feats.view(n, g, g, d).permute(0, 3, 1, 2)
    return F.avg_pool2d(grid, 2).permute(0, 2, 3, 1).reshape(n, -1, d)
