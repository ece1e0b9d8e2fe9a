"""The Hugging Face reference for one decode step: the model's own language model over a ``StaticCache``.

``prune-bench speed --decode-tokens N`` reports our decode (adapters/graph_decode.py: the step as CUDA
graphs over static per-layer KV buffers). What that figure should be compared with is the same model's
own decode at the same KV length, done the way transformers makes a decode step graph-friendly: a
``transformers.StaticCache`` of ``kv_len + steps`` entries, prefilled with ``kv_len`` random embeddings,
then one token at a time (:class:`HFStaticDecode`). With ``graph=True`` the step is captured once as a
``torch.cuda.CUDAGraph`` (after warm-up steps on a side stream) and replayed; with ``graph=False`` it runs
eagerly. Each step is timed on its own (:class:`~prune_bench.core.timing.Clock`: CUDA events on a GPU)
and the median is reported.

What one step includes: the token's embedding lookup, every decoder layer (the new key and value
written into the static cache at its device-side position, attention over the whole static buffer
under HF's mask of the entries written so far), the final norm and the LM head (a real step produces
the next token's logits). Not included: the argmax and reading the token back to the host, which our
decode loop's per-token figure does include (a few microseconds).

transformers 5.x: ``StaticCache(config=..., max_cache_len=...)`` is the constructor in 5.17 and in
later 5.x releases (4.x's ``max_batch_size``, ``device`` and ``dtype`` are gone: each layer allocates
its buffers at the first update, on the keys' device and dtype). The write position is no longer a
``cache_position`` argument: each cache layer keeps a device-side counter it advances at every update,
and HF's mask reads it as the query offset, so a captured step writes at the next position on every
replay. The cache is passed as ``past_key_values`` up to 5.2x and as ``cache`` later (the old name
still works there, deprecated): :func:`cache_keyword` reads which one the forward takes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from statistics import median
from typing import Any

import torch

from prune_bench.adapters.base import Adapter
from prune_bench.core.timing import Clock


def cache_keyword(lm: Any) -> str:
    """The keyword the language model's forward takes its cache under (``cache`` or ``past_key_values``)."""
    params = inspect.signature(lm.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def uses_m_rope(text_config: Any) -> bool:
    """Whether the language model takes Qwen's M-RoPE position ids ``[3, 1, N]`` (its RoPE parameters name
    an ``mrope_section``), not ``[1, N]``."""
    rope = getattr(text_config, "rope_parameters", None) or getattr(text_config, "rope_scaling", None) or {}
    return "mrope_section" in rope


class HFStaticDecode:
    """The HF language model of ``adapter`` decoding over a ``StaticCache`` of ``capacity`` entries, after a
    prefill of ``kv_len`` random embeddings (seeded by ``seed``; scaled like the embedding table's rows).

    :meth:`prefill` (re)fills the cache; :meth:`step` decodes :attr:`token` at :attr:`position` and advances
    the position, all in device tensors, so the same step can be captured once and replayed."""

    def __init__(self, adapter: Adapter, kv_len: int, capacity: int, *, seed: int = 0) -> None:
        from transformers import StaticCache

        if capacity < kv_len + 1:
            raise ValueError(f"a static cache of {capacity} entries leaves no room to decode after {kv_len}")
        self.lm = adapter.lm
        self.head = adapter.model.lm_head
        self.kv_len = kv_len
        self.keyword = cache_keyword(self.lm)
        config = self.lm.config
        self.cache = StaticCache(config=config, max_cache_len=capacity)
        embed = self.lm.get_input_embeddings()
        device, dtype = embed.weight.device, embed.weight.dtype
        scale = float(embed.weight.detach().float().std())
        gen = torch.Generator().manual_seed(seed)
        self.prefix = (torch.randn(1, kv_len, config.hidden_size, generator=gen) * scale).to(device, dtype)
        self.m_rope = uses_m_rope(config)
        positions = torch.arange(kv_len, device=device)[None]  # [1, N]
        self.prefix_position = positions.expand(3, 1, kv_len) if self.m_rope else positions
        self.token = torch.zeros(1, 1, dtype=torch.long, device=device)
        self.position = torch.zeros((3, 1, 1) if self.m_rope else (1, 1), dtype=torch.long, device=device)

    def _forward(self, **inputs: Any) -> torch.Tensor:
        out = self.lm(**inputs, use_cache=True, **{self.keyword: self.cache})
        return self.head(out.last_hidden_state[:, -1])  # [1, vocab]

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        """Empty the cache (in place: a captured step keeps its buffers) and prefill the ``kv_len`` random
        embeddings; the next step decodes at position ``kv_len``. Returns the prefill's last logits."""
        self.cache.reset()
        logits = self._forward(inputs_embeds=self.prefix, position_ids=self.prefix_position)
        self.position.fill_(self.kv_len)
        return logits

    @torch.no_grad()
    def step(self) -> torch.Tensor:
        """One decode step of :attr:`token`: its logits ``[1, vocab]``; the cache and the position advance."""
        logits = self._forward(input_ids=self.token, position_ids=self.position)
        self.position.add_(1)
        return logits


@dataclass
class StepTiming:
    """Per-step times of one run of :func:`time_hf_static_step`."""

    ms: list[float]
    #: logits of the first timed step after the prefill (float32, on the host): the graph and the eager
    #: step must agree on them
    first_logits: torch.Tensor
    graph: bool

    @property
    def median_ms(self) -> float:
        return median(self.ms)


@torch.no_grad()
def time_hf_static_step(
    adapter: Adapter, kv_len: int, steps: int, *, graph: bool = True, warmup: int = 3, seed: int = 0
) -> StepTiming:
    """Time ``steps`` decode steps of the HF language model after a ``kv_len`` prefill (each step alone).

    ``graph=True`` (CUDA only): ``warmup`` eager steps on a side stream, the step captured as a CUDA graph,
    the cache prefilled again, then ``steps`` replays. ``graph=False``: ``warmup`` eager steps, the cache
    prefilled again, then ``steps`` eager steps. The cache holds ``kv_len + max(steps, warmup)`` entries
    (``kv_len + steps`` with the default warm-up), so every step attends over a buffer of that size, as
    our graph decode's static buffers (prompt kept + tokens to generate) do."""
    device = adapter.device
    if graph and device.type != "cuda":
        raise ValueError("a CUDA graph step needs a CUDA device")
    ref = HFStaticDecode(adapter, kv_len, kv_len + max(steps, warmup, 1), seed=seed)
    ref.prefill()
    run = ref.step
    if graph:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                ref.step()
        torch.cuda.current_stream(device).wait_stream(side)
        cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cuda_graph):
            static_logits = ref.step()  # recorded, not run: the cache and the position do not move

        def run() -> torch.Tensor:
            cuda_graph.replay()
            return static_logits

    else:
        for _ in range(warmup):
            ref.step()
    ref.prefill()
    clock = Clock(device)
    first: torch.Tensor | None = None
    for i in range(steps):
        with clock.measure(f"step{i}"):
            logits = run()
        if first is None:
            first = logits.float().cpu()  # (outside the timed span)
    totals = clock.totals_ms()
    assert first is not None
    return StepTiming([totals[f"step{i}"] for i in range(steps)], first, graph)


def hf_static_graph_step_ms(
    adapter: Adapter, kv_len: int, steps: int, *, warmup: int = 3, seed: int = 0
) -> float:
    """Median ms of one HF decode step over a ``StaticCache`` after ``kv_len`` prompt entries, replayed as a
    CUDA graph (:func:`time_hf_static_step`): the reference our graph decode's ms/token is held to."""
    return time_hf_static_step(adapter, kv_len, steps, graph=True, warmup=warmup, seed=seed).median_ms


@torch.no_grad()
def step_matches_forward(
    adapter: Adapter, kv_len: int, *, token: int = 0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of one :class:`HFStaticDecode` step of ``token`` after the ``kv_len`` prefill, and the HF
    model's own uncached forward over the same prefix followed by ``token`` (float32, on the host): equal
    up to rounding when the reference is a real decode step (right cache position, position id and mask)."""
    ref = HFStaticDecode(adapter, kv_len, kv_len + 1, seed=seed)
    ref.prefill()
    ref.token.fill_(token)
    step = ref.step().float().cpu()
    embeds = torch.cat([ref.prefix, ref.lm.get_input_embeddings()(ref.token)], dim=1)
    positions = torch.arange(kv_len + 1, device=embeds.device)[None]
    position = positions.expand(3, 1, kv_len + 1) if ref.m_rope else positions
    out = ref.lm(inputs_embeds=embeds, position_ids=position, use_cache=False)
    return step, ref.head(out.last_hidden_state[:, -1]).float().cpu()
