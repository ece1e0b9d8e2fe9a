"""Decode steps without per-kernel launch overhead: the step replayed as CUDA graphs over static KV buffers.

A 7B model's eager decode step launches several hundred small kernels; on an H200 their launches, not
the weights' reads, set its time (the speed issue measured 35.6 ms a token eager against 10.2 ms for the
same step as a CUDA graph), so the smaller KV cache pruning leaves could not show. :class:`GraphStep`
runs the same step (:meth:`DecoderRunner.decode_step`'s arithmetic: the runner's own ``_qkv``, o-proj,
norms and MLPs) over static buffers, one per layer, sized by what prefill kept in that layer plus the
tokens to generate:

* the new token's key and value are written at ``kept + step`` (a device index, so one graph serves
  every step), and attention covers the whole buffer under a mask of the entries written so far and
  allowed (mask mode's hidden prompt entries, a decode stage's restriction);
* grouped-query attention runs with the query heads of a KV head as one short query sequence of that
  head, so no key is copied per query head;
* a ``decode`` stage (DyCoke's per-step KV selection) splits the step: the layers before it are one
  graph, the stage runs eagerly on that layer's query and cache (as in the eager loop), writes the
  visibility it chose into the later layers' masks, and the layers after it are the next graph.

The graphs are captured once per shape of the caches (the kept count of every layer), at the first
step of the first prefill with that shape, and replayed for every later step and prefill with it: a
prefill's caches are copied into the static buffers once (a few hundred MB at 7B, 32 frames: about a
tenth of a millisecond of copying). Graphs of up to :data:`POOL_SIZE` shapes are kept.

:class:`GraphStep` with ``capture=False`` runs the same static-buffer arithmetic eagerly (the CPU
tests compare it with the eager loop); the adapters' eager loop stays the reference on the CPU and is
what runs without CUDA, with ``PRUNE_BENCH_DECODE=eager``, or where a graph cannot be captured (one
warning, e.g. a mixture-of-experts layer whose routing synchronises with the host).

Layers on several devices (``--device-map``): each layer's static buffers live on that layer's device
and the step's hidden state and RoPE tables move at device boundaries, as in the eager loop. A CUDA graph
captures one device's work, so graphs run only when every layer, the embedding, the final norm and the
LM head share one device; a model split across GPUs decodes with the eager loop (:meth:`GraphPool.step_for`
returns None), which costs the launch overhead above on every GPU.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prune_bench.adapters.decoder import DecoderRunner, LayerCache, PrefillResult
from prune_bench.core.context import DecodeContext
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind
from prune_bench.core.timing import Clock

#: shapes of cache (one graph set each) kept at a time
POOL_SIZE = 4
DECODE_PATHS = ("graph", "eager")


def decode_path(device: torch.device) -> str:
    """``graph`` on CUDA unless ``PRUNE_BENCH_DECODE=eager``; ``eager`` elsewhere."""
    forced = os.environ.get("PRUNE_BENCH_DECODE", "").strip().lower()
    if forced and forced not in DECODE_PATHS:
        from prune_bench.errors import UserError

        raise UserError(f"PRUNE_BENCH_DECODE must be one of {', '.join(DECODE_PATHS)}, got '{forced}'")
    if device.type != "cuda":
        return "eager"
    return forced or "graph"


@dataclass(frozen=True)
class _Segment:
    start: int  # first layer
    stop: int  # one past the last layer; a decode stage (if any) runs after layer stop - 1


class GraphStep:
    """One cache shape's decode step over static buffers, as CUDA graphs (``capture=True``) or eagerly."""

    def __init__(self, runner: DecoderRunner, pre: PrefillResult, plan: PruningPlan, *, capture: bool) -> None:
        self.runner = runner
        self.capture = capture
        caches = pre.caches
        where = pre.placement or runner.placement()
        if capture and not where.single:
            raise ValueError("a CUDA graph decode step runs on one device; this model's layers are on several")
        self.where = where
        device = where.embed
        self.device = device
        self.prompt_lengths = [c.length for c in caches]
        self.capacity = [c.key.shape[1] for c in caches]
        self.keys = [torch.zeros_like(c.key) for c in caches]
        self.values = [torch.zeros_like(c.value) for c in caches]
        # which entries a layer may attend to besides "written so far": mask mode's hidden prompt
        # entries (copied per prefill) and a decode stage's choice (rewritten per step)
        stage_layers = sorted(s.layer for s in plan.decode)
        # Layers whose caches hold the same tokens (no stage ran between them: the same ``source``
        # tensor) and that sit on the same side of every decode stage share one mask buffer, so a
        # stage's choice is written once per group, not once per layer. Mask mode's per-layer
        # visibility differs layer by layer: there every layer has its own.
        groups: dict[tuple, torch.Tensor] = {}
        self.allowed = []
        self.group_first: list[int] = []  # the first layer of each layer's group
        for i, (c, cap) in enumerate(zip(caches, self.capacity, strict=True)):
            key = (
                (c.layout.source.data_ptr(), cap, sum(layer <= i for layer in stage_layers))
                if c.visible is None
                else ("own", i)
            )
            if key not in groups:
                groups[key] = torch.ones(cap, dtype=torch.bool, device=where.layers[i])
                first = i
            else:
                first = next(j for j in range(i) if self.allowed[j] is groups[key])
            self.allowed.append(groups[key])
            self.group_first.append(first)
        layer_devices = where.layers
        self.prompt_pos = [torch.tensor(n, device=d) for n, d in zip(self.prompt_lengths, layer_devices, strict=True)]
        self.arange = [torch.arange(cap, device=d) for cap, d in zip(self.capacity, layer_devices, strict=True)]
        # the step counter on every device a layer is on (one tensor when all share one)
        self.steps = {d: torch.zeros((), dtype=torch.long, device=d) for d in dict.fromkeys(layer_devices)}
        self.step = self.steps[layer_devices[0]]
        self.token = torch.zeros(1, dtype=torch.long, device=device)
        m_rope = pre.state.position.dim() == 2
        self.position = torch.zeros((pre.state.position.shape[0], 1) if m_rope else (1,), dtype=torch.long, device=device)
        self.stages = {s.layer: s for s in plan.decode}  # the current plan's (set again by load)
        bounds = sorted({0, *(layer for layer in stage_layers if 0 < layer < runner.num_layers), runner.num_layers})
        self.segments = [_Segment(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self.hiddens: dict[int, torch.Tensor] = {}  # between segments, by the layer that reads it
        self.queries: dict[int, torch.Tensor] = {}  # last layer's query of a segment followed by a stage
        self.logits: torch.Tensor | None = None
        self.graphs: list[torch.cuda.CUDAGraph] | None = None
        self.cos_sin: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def key_of(pre: PrefillResult, plan: PruningPlan) -> tuple:
        caches = pre.caches
        return (
            tuple((c.length, c.key.shape[1], c.visible is not None) for c in caches),
            tuple(sorted((s.layer, s.name) for s in plan.decode)),
            pre.state.position.dim(),
        )

    # ------------------------------------------------------------------------------- per prefill
    @torch.no_grad()
    def load(self, pre: PrefillResult, plan: PruningPlan) -> None:
        """Copy one prefill's caches (and mask mode's visibility) into the static buffers."""
        self.stages = {s.layer: s for s in plan.decode}
        for i, c in enumerate(pre.caches):
            n = c.length
            self.keys[i][:, :n].copy_(c.key[:, :n])
            self.values[i][:, :n].copy_(c.value[:, :n])
            if self.group_first[i] == i:
                self.allowed[i].fill_(True)
                if c.visible is not None:
                    self.allowed[i][: c.visible.numel()].copy_(c.visible)
        self.base_allowed: list[torch.Tensor | None] = [a.clone() if self.group_first[i] == i else None for i, a in enumerate(self.allowed)]

    # ---------------------------------------------------------------------------- the arithmetic
    def _layers(self, seg: _Segment) -> None:
        r = self.runner
        where = self.where
        if seg.start == 0:
            h = r.embed(self.token)
            current = where.embed
        else:
            h = self.hiddens[seg.start]
            current = where.layers[seg.start - 1]
        position = self.position if current == where.embed else self.position.to(current)
        cos, sin = r._rope(h, position)  # (the rotary embedding reads only its dtype and device)
        kv, groups, hd = r.num_kv_heads, r.num_heads // r.num_kv_heads, r.head_dim
        for idx in range(seg.start, seg.stop):
            if where.layers[idx] != current:  # a device boundary (never inside a captured graph)
                current = where.layers[idx]
                h, cos, sin = h.to(current), cos.to(current), sin.to(current)
            layer = r.layers[idx]
            x = layer.input_layernorm(h)
            q, k, v = r._qkv(layer, x, cos, sin)  # [H, 1, hd], [KV, 1, hd]
            write = self.prompt_pos[idx] + self.steps[where.layers[idx]]
            self.keys[idx].index_copy_(1, write.view(1), k)
            self.values[idx].index_copy_(1, write.view(1), v)
            mask = (self.arange[idx] <= write) & self.allowed[idx]
            out = F.scaled_dot_product_attention(
                q.reshape(kv, groups, hd)[None],
                self.keys[idx][None],
                self.values[idx][None],
                attn_mask=mask[None, None, None, :],
                scale=r.scaling,
            )  # [1, KV, groups, hd]: the query heads of one KV head as its queries
            h = h + layer.self_attn.o_proj(out.reshape(1, kv * groups * hd))
            h = h + r._mlp(layer, h)
            if idx + 1 == seg.stop and seg.stop in self.stages:
                self.queries[seg.stop] = q
        if seg.stop < r.num_layers:
            buffer = self.hiddens.get(seg.stop)
            self.hiddens[seg.stop] = h if buffer is None else buffer.copy_(h)
        if seg.stop == r.num_layers:
            logits = r._logits(h, where)
            self.logits = logits if self.logits is None else self.logits.copy_(logits)

    def _run_segment(self, i: int) -> None:
        if self.graphs is not None:
            self.graphs[i].replay()
        else:
            self._layers(self.segments[i])

    def _capture(self) -> None:
        """Warm up on a side stream, then capture each segment (the step's inputs are already set)."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        saved = [(k.clone(), v.clone()) for k, v in zip(self.keys, self.values, strict=True)]
        with torch.cuda.stream(stream):
            for seg in self.segments:
                self._layers(seg)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        for (k, v), key, value in zip(saved, self.keys, self.values, strict=True):
            key.copy_(k)
            value.copy_(v)
        graphs = []
        for seg in self.segments:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                self._layers(seg)
            graphs.append(g)
        self.graphs = graphs

    # ----------------------------------------------------------------------------------- a step
    @torch.no_grad()
    def __call__(self, token: int, position: int, step: int, pre: PrefillResult, clock: Clock) -> torch.Tensor:
        self.token.fill_(token)
        self.position.fill_(position)
        for counter in self.steps.values():
            counter.fill_(step)
        if step == 0:
            for a, b in zip(self.allowed, self.base_allowed, strict=True):
                if b is not None:
                    a.copy_(b)
        if self.capture and self.graphs is None:
            self._capture()
        for i, seg in enumerate(self.segments):
            self._run_segment(i)
            stage = self.stages.get(seg.stop)
            if stage is not None:
                self._decode_stage(stage, seg.stop, step, pre, clock)
        assert self.logits is not None
        return self.logits.clone()

    def _decode_stage(self, stage, layer: int, step: int, pre: PrefillResult, clock: Clock) -> None:  # type: ignore[no-untyped-def]
        """The stage on layer ``layer - 1``'s query and cache, then its choice into later layers' masks."""
        idx = layer - 1
        length = self.prompt_lengths[idx] + step + 1
        view = LayerCache(self.keys[idx], self.values[idx], length, pre.caches[idx].layout, pre.caches[idx].visible)
        q = self.queries[layer]
        with clock.measure("decode_pruning"), clock.measure(f"stage:{stage.name}"):
            ctx = DecodeContext(
                step=step,
                layer=layer,
                cache_layout=view.layout,
                memory=pre.memory,
                _attention=lambda q=q, c=view: self.runner._decode_rows(q, c),
            )
            visible_sources = stage.fn(ctx)
        for later in range(layer, self.runner.num_layers):
            base = self.base_allowed[later]
            if base is None:  # its group's first layer writes the shared buffer
                continue
            layout = pre.caches[later].layout
            allowed = base.clone()
            if visible_sources is not None:
                n = layout.source.numel()
                visual = layout.kind == TokenKind.VISUAL
                chosen = visible_sources
                if chosen.device != layout.source.device:  # a later layer on another device
                    chosen = chosen.to(layout.source.device)
                allowed[:n] &= ~visual | torch.isin(layout.source, chosen)
            self.allowed[later].copy_(allowed)

    @torch.no_grad()
    def store_back(self, pre: PrefillResult, steps_done: int) -> None:
        """Leave the generated tokens' keys and values in the prefill's own caches too (callers that
        read them after decoding see what the eager loop leaves)."""
        for i, c in enumerate(pre.caches):
            n, m = self.prompt_lengths[i], self.prompt_lengths[i] + steps_done
            c.key[:, n:m].copy_(self.keys[i][:, n:m])
            c.value[:, n:m].copy_(self.values[i][:, n:m])
            c.length = m


class GraphPool:
    """The :class:`GraphStep` of each recent cache shape (at most :data:`POOL_SIZE`)."""

    def __init__(self) -> None:
        self._steps: OrderedDict[tuple, GraphStep | None] = OrderedDict()

    def step_for(self, runner: DecoderRunner, pre: PrefillResult, plan: PruningPlan) -> GraphStep | None:
        """The graph step of ``pre``'s shape, loaded with its caches; None where graphs cannot run (a
        model whose parts are on several devices: the eager loop decodes it)."""
        if not (pre.placement or runner.placement()).single:
            return None
        key = GraphStep.key_of(pre, plan)
        if key in self._steps:
            self._steps.move_to_end(key)
            found = self._steps[key]
        else:
            found = GraphStep(runner, pre, plan, capture=True)
            self._steps[key] = found
            while len(self._steps) > POOL_SIZE:
                self._steps.popitem(last=False)
        if found is not None:
            found.load(pre, plan)
        return found

    def failed(self, pre: PrefillResult, plan: PruningPlan, exc: BaseException) -> None:
        key = GraphStep.key_of(pre, plan)
        self._steps[key] = None  # this shape decodes eagerly from now on
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        warnings.warn(
            f"decode as a CUDA graph failed ({first}); this cache shape decodes eagerly "
            "(PRUNE_BENCH_DECODE=eager skips the attempt)",
            RuntimeWarning,
            stacklevel=3,
        )

