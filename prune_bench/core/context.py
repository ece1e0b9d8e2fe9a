"""What a stage may ask about the model while it runs, computed only when asked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from prune_bench.core.state import TokenState


@dataclass
class VisionAttention:
    """The vision tower's attention at the layer whose output feeds the projector.

    ``received``: mean attention each patch receives (mean over heads and queries), ``[T, P]``;
    ``keys``: that layer's keys averaged over heads, ``[T, P, d]``. Both are pooled exactly like the
    features the LLM gets, so index ``p`` matches the token at the same row/column of the frame.
    """

    received: torch.Tensor
    keys: torch.Tensor


@dataclass
class StageContext:
    """Context of one prefill stage.

    :ivar hook: the hook point being run.
    :ivar layer: the decoder layer (``layer`` hook only).
    :ivar num_layers: decoder layers of the LLM.
    :ivar generator: a seeded generator on the model's device for stages that sample.
    :ivar memory: per-sample scratch shared by the stages of one strategy across hook points
        (e.g. HieraVid's segment marginal values computed at the input and used at layer 7).
    """

    hook: str
    num_layers: int
    generator: torch.Generator
    memory: dict[str, Any]
    layer: int | None = None
    _attention: Callable[[TokenState, int], torch.Tensor] | None = None
    _vision: Callable[[], VisionAttention] | None = None
    _keys: Callable[[TokenState], torch.Tensor] | None = None
    _final_norm: Callable[[torch.Tensor], torch.Tensor] | None = None
    _cache: dict[Any, Any] = field(default_factory=dict)

    def last_token_attention(self, state: TokenState, num_queries: int = 1) -> torch.Tensor:
        """Attention of the last ``num_queries`` tokens over every token of ``state``, ``[H, q, N]``.

        Computed from this layer's own q/k with RoPE applied and grouped-query heads expanded;
        softmax in float32. Only available to ``layer`` stages.
        """
        if self._attention is None:
            raise RuntimeError(f"attention rows are only available to 'layer' stages, not at {self.hook!r}")
        # keyed by the identity of what the rows depend on (no host sync on the hot path); the state is
        # kept with its rows so that no id can be reused by another tensor while this context lives
        key = ("attn", num_queries, id(state.hidden), id(state.position), id(state.source))
        if key not in self._cache:
            self._cache[key] = (state, self._attention(state, num_queries))
        rows: torch.Tensor = self._cache[key][1]
        return rows

    def layer_keys(self, state: TokenState) -> torch.Tensor:
        """This layer's post-RoPE keys of the tokens of ``state``, ``[KV, N, hd]`` (key-value heads, not
        expanded for grouped queries): computed from ``state`` for a ``pre`` stage (what the layer is
        about to attend with), the ones its attention used for a ``post`` stage. Only for ``layer`` stages.
        """
        if self._keys is None:
            raise RuntimeError(f"layer keys are only available to 'layer' stages, not at {self.hook!r}")
        return self._keys(state)

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LLM's final norm (the one before the LM head) applied to ``hidden`` ``[n, D]``."""
        if self._final_norm is None:
            raise RuntimeError(f"the final norm is only available to 'layer' stages, not at {self.hook!r}")
        return self._final_norm(hidden)

    def vision_attention(self) -> VisionAttention:
        """The vision tower's attention (declare ``needs={"vision_attention"}`` on the stage)."""
        if self._vision is None:
            raise RuntimeError("vision attention was not captured: declare needs={'vision_attention'}")
        if "vision" not in self._cache:
            self._cache["vision"] = self._vision()
        result: VisionAttention = self._cache["vision"]
        return result


@dataclass
class DecodeContext:
    """Context of one decode stage call, at one generated token.

    :ivar step: 0 for the first generated token.
    :ivar layer: the stage's layer ``L``; ``attention()`` is the current token's attention at
        layer ``L - 1`` over that layer's cache, mean over heads, ``[n]``.
    :ivar cache_layout: layout of layer ``L - 1``'s cache (hidden states empty), in cache order.
    :ivar memory: per-sample scratch that persists across decode steps.
    """

    step: int
    layer: int
    cache_layout: TokenState
    memory: dict[str, Any]
    _attention: Callable[[], torch.Tensor]

    def attention(self) -> torch.Tensor:
        return self._attention()
