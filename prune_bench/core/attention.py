"""Attention rows from a layer's own q/k: exact, GQA-aware, and without eager attention.

Methods that score visual tokens by "attention of the last token" need one row of the attention
matrix, not the matrix: softmax(q_i K^T / sqrt(d)) for the chosen queries i. Switching the model
to eager attention to get it materialises an N x N matrix per head in every layer; this computes
the rows needed from the post-RoPE queries and keys that the layer computes anyway.
"""

from __future__ import annotations

import torch


def attention_rows(
    query: torch.Tensor,
    key: torch.Tensor,
    query_index: torch.Tensor,
    scaling: float,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax attention of selected queries over all keys, causal, ``[H, Q, N]`` in float32.

    :param query: post-RoPE queries of the chosen rows, ``[H, Q, hd]``.
    :param key: post-RoPE keys of all tokens, ``[KV, N, hd]`` (``H`` must be a multiple of ``KV``).
    :param query_index: index of each chosen query in the key sequence, ``[Q]``; query ``i`` sees
        keys ``0..query_index[i]`` (the causal mask).
    :param scaling: usually ``head_dim ** -0.5``.
    :param key_mask: optional boolean ``[N]``; ``False`` keys are invisible (mask mode).
    """
    h, q, hd = query.shape
    kv, n, _ = key.shape
    groups = h // kv
    # Grouped-query heads share a key head: fold the group into the query axis instead of copying K.
    scores = torch.matmul(query.float().reshape(kv, groups * q, hd), key.float().transpose(1, 2))
    scores = scores.reshape(h, q, n) * scaling
    visible = torch.arange(n, device=key.device)[None, :] <= query_index.to(key.device)[:, None]
    if key_mask is not None:
        visible = visible & key_mask[None, :]
    scores = scores.masked_fill(~visible[None], float("-inf"))
    return torch.softmax(scores, dim=-1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE as Qwen2/Llama apply it; ``x`` is ``[heads, N, hd]``, ``cos``/``sin`` are ``[N, hd]``."""
    return x * cos[None] + rotate_half(x) * sin[None]
