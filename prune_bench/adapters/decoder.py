"""Our own prefill and decode loop over a Hugging Face Qwen2-style decoder.

Running the layers ourselves (instead of patching the HF forward) is what lets stages remove tokens
between and inside layers while SDPA stays on: every layer works on the tokens alive at that point,
RoPE is computed from each token's ORIGINAL position id, and each layer's KV cache holds exactly the
tokens its attention saw.

``mode="mask"`` runs the same stages on the full sequence and hides removed tokens with an
attention mask instead. It saves nothing; it is the oracle that ``mode="drop"`` must match.

Layers may sit on several devices (``--device-map``, adapters/placement.py): the loop reads the
:class:`~prune_bench.adapters.placement.Placement` once per prefill (its decode steps reuse it) and moves the token
state, RoPE tables, masks, KV-visibility choices and the residual to a layer's device only where it
differs from the previous part's. A stage runs on the device of the layer it is mounted at (pre-LLM
stages on the embedding's), each layer's KV cache lives on that layer's device, the final norm and the
LM head run on theirs, and the logits come back on the embedding's device (where the prompt started).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from prune_bench.adapters.placement import Generators, Placement, module_device, move_state, vision_on
from prune_bench.core.attention import apply_rope, attention_rows
from prune_bench.core.context import DecodeContext, StageContext, VisionAttention
from prune_bench.core.ledger import LayerCount
from prune_bench.core.stages import PRE_LLM, PruningPlan, Stage
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.timing import Clock

Mode = Literal["drop", "mask"]
RopeFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
#: ``residual(layer, source) -> [len(source), D]`` or None: what an adapter adds to the hidden states of the
#: tokens with these ``source`` ids after decoder layer ``layer`` (Qwen3-VL's DeepStack features); the
#: loop adds it to the tokens alive after that layer only (a pruned token receives nothing)
ResidualFn = Callable[[int, torch.Tensor], torch.Tensor | None]


@dataclass
class LayerCache:
    """One layer's KV cache, preallocated for the decode steps; ``layout`` is its tokens' layout."""

    key: torch.Tensor  # [KV, capacity, hd], post-RoPE
    value: torch.Tensor
    length: int
    layout: TokenState  # hidden is empty; source/kind of each prompt entry
    visible: torch.Tensor | None = None  # mask mode: which prompt entries the layer's attention saw

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.key[:, self.length] = k
        self.value[:, self.length] = v
        self.length += 1


@dataclass
class PrefillResult:
    logits: torch.Tensor  # [V] next-token logits after the prompt
    caches: list[LayerCache]
    counts: list[LayerCount]
    state: TokenState  # tokens alive after the last layer
    input_visual: int  # visual tokens entering the LLM (after pre-LLM stages)
    memory: dict[str, Any] = field(default_factory=dict)
    placement: Placement | None = None  # the devices this prefill ran on (its decode steps follow them)


def _layout_only(state: TokenState) -> TokenState:
    return state.with_hidden(state.hidden[:, :0]) if state.hidden.dim() == 2 else state


class DecoderRunner:
    """Runs prefill and decode for one Qwen2-style language model.

    :param layers: the HF decoder layers (``Qwen2DecoderLayer``-like: ``input_layernorm``,
        ``self_attn.{q,k,v,o}_proj``, ``post_attention_layernorm``, ``mlp``).
    :param norm: the final norm; :param lm_head: the output projection.
    :param embed: the input embedding (for decode steps).
    :param rope: ``rope(x, position) -> (cos, sin)`` with ``cos``/``sin`` of shape ``[N, head_dim]``.
    """

    def __init__(
        self,
        layers: nn.ModuleList,
        norm: nn.Module,
        lm_head: nn.Module,
        embed: nn.Module,
        rope: RopeFn,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
    ) -> None:
        self.layers = layers
        self.norm = norm
        self.lm_head = lm_head
        self.embed = embed
        self.rope = rope
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scaling = head_dim**-0.5
        # (stage name, device bool) per stage run inside a prefill, read once at its end
        self._text_checks: list[tuple[str, torch.Tensor]] | None = None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def placement(self) -> Placement:
        """Where the embedding, each decoder layer, the final norm and the LM head are; read once per
        prefill (a model moved after the runner was built is followed)."""
        return Placement(
            embed=module_device(self.embed),
            layers=tuple(module_device(layer) for layer in self.layers),
            norm=module_device(self.norm),
            head=module_device(self.lm_head),
        )

    def _rope(self, x: torch.Tensor, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``self.rope`` with its tables on ``x``'s device (a dispatched rotary module answers on its own)."""
        cos, sin = self.rope(x, position)
        if cos.device != x.device:
            cos, sin = cos.to(x.device), sin.to(x.device)
        return cos, sin

    def _logits(self, h: torch.Tensor, where: Placement) -> torch.Tensor:
        """Final norm and LM head on ``h`` ``[1, D]``, each on its device; ``[V]`` on the embedding's."""
        if where.single:
            return self.lm_head(self.norm(h))[0]  # type: ignore[no-any-return]
        last = where.layers[-1] if where.layers else where.embed  # where ``h`` is
        x = self.norm(h if where.norm == last else h.to(where.norm))
        logits = self.lm_head(x if where.head == where.norm else x.to(where.head))[0]
        return logits if where.embed == where.head else logits.to(where.embed)  # type: ignore[no-any-return]

    def _final_norm(self, where: Placement) -> Callable[[torch.Tensor], torch.Tensor]:
        if where.single:
            return self.norm  # type: ignore[return-value]
        return lambda h: self.norm(h.to(where.norm)).to(h.device)

    # ---------------------------------------------------------------------------- projections
    def _qkv(
        self, layer: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Post-RoPE queries ``[H, n, hd]`` and keys ``[KV, n, hd]``, values ``[KV, n, hd]`` of ``x``."""
        v = layer.self_attn.v_proj(x).view(x.shape[0], self.num_kv_heads, self.head_dim).transpose(0, 1)
        return self._queries(layer, x, cos, sin), self._keys(layer, x, cos, sin), v

    def _queries(
        self, layer: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        attn = layer.self_attn
        q = attn.q_proj(x).view(x.shape[0], self.num_heads, self.head_dim)
        if getattr(attn, "q_norm", None) is not None:  # Qwen3: RMSNorm over each head before RoPE
            q = attn.q_norm(q)
        return apply_rope(q.transpose(0, 1), cos, sin)

    def _keys(self, layer: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        attn = layer.self_attn
        k = attn.k_proj(x).view(x.shape[0], self.num_kv_heads, self.head_dim)
        if getattr(attn, "k_norm", None) is not None:
            k = attn.k_norm(k)
        return apply_rope(k.transpose(0, 1), cos, sin)

    @staticmethod
    def _mlp(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """The layer's MLP on ``[n, D]``, called on a batch of one as HF does (a sparse MoE block reads
        ``(batch, seq, D)``; a dense MLP is the same either way)."""
        return layer.mlp(layer.post_attention_layernorm(h)[None])[0]  # type: ignore[operator, no-any-return]

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """SDPA over ``[H, n, hd]`` queries and ``[KV, m, hd]`` keys; causal when ``mask`` is None."""
        groups = self.num_heads // self.num_kv_heads
        if mask is None:
            out = F.scaled_dot_product_attention(
                q[None], k[None], v[None], is_causal=q.shape[1] > 1, scale=self.scaling, enable_gqa=groups > 1
            )
        else:
            k = k.repeat_interleave(groups, dim=0)
            v = v.repeat_interleave(groups, dim=0)
            out = F.scaled_dot_product_attention(
                q[None], k[None], v[None], attn_mask=mask, scale=self.scaling
            )
        return out[0].transpose(0, 1).reshape(q.shape[1], -1)

    # --------------------------------------------------------------------------------- stages
    def run_stages(
        self,
        stages: tuple[Stage, ...],
        state: TokenState,
        make_ctx: Callable[[Stage], StageContext],
        clock: Clock,
    ) -> TokenState:
        for stage in stages:
            with clock.measure("pruning"), clock.measure(f"stage:{stage.name}"):
                new = stage.fn(state, make_ctx(stage))
            if not isinstance(new, TokenState):
                raise TypeError(f"stage {stage.name!r} returned {type(new).__name__}, not a TokenState")
            if not stage.touches_text:
                kept = _text_tokens_kept(state, new)
                if self._text_checks is None:  # outside a prefill: check now
                    _raise_for_text_checks([(stage.name, kept)])
                else:  # inside one: no host sync per stage; prefill reads them all once at its end
                    self._text_checks.append((stage.name, kept))
            if stage.position_policy == "reindex":
                new = new.reindexed()
            state = new
        return state

    def pre_llm(
        self,
        state: TokenState,
        plan: PruningPlan,
        clock: Clock,
        memory: dict[str, Any],
        generator: torch.Generator,
        vision: Callable[[], VisionAttention] | None,
    ) -> TokenState:
        """The ``input``, ``segment`` and ``frame`` stages, on the embedding's device."""
        for hook in PRE_LLM:
            stages = tuple(s for s in plan.pre_llm if s.hook == hook)
            if not stages:
                continue

            def ctx(stage: Stage, hook: str = hook) -> StageContext:
                return StageContext(
                    hook=hook, num_layers=self.num_layers, generator=generator, memory=memory, _vision=vision
                )

            state = self.run_stages(stages, state, ctx, clock)
        return state

    # -------------------------------------------------------------------------------- prefill
    @torch.no_grad()
    def prefill(
        self,
        state: TokenState,
        plan: PruningPlan,
        *,
        mode: Mode = "drop",
        max_new_tokens: int = 0,
        clock: Clock | None = None,
        generator: torch.Generator | None = None,
        vision: Callable[[], VisionAttention] | None = None,
        residual: ResidualFn | None = None,
    ) -> PrefillResult:
        """The prompt through every layer under ``plan``; ``residual`` as :data:`ResidualFn`."""
        clock = clock or Clock(state.device)
        generator = generator or torch.Generator(device=state.device).manual_seed(0)
        where = self.placement()
        if state.device != where.embed:  # a prompt encoded on the vision tower's device
            state = move_state(state, where.embed)
        gens = Generators(generator)
        vision = vision_on(vision, where.embed)
        memory: dict[str, Any] = {}
        self._text_checks = []
        try:
            with clock.measure("prefill"):
                if mode == "drop":
                    state = self.pre_llm(state, plan, clock, memory, gens.on(where.embed), vision)
                    input_visual = state.num_visual
                    out = self._prefill_drop(
                        state, plan, max_new_tokens, clock, memory, gens, residual, where
                    )
                else:
                    out = self._prefill_mask(
                        state, plan, max_new_tokens, clock, memory, gens, vision, residual, where
                    )
                    input_visual = out.counts[0].attn_visual if out.counts else state.num_visual
            _raise_for_text_checks(self._text_checks)
        finally:
            self._text_checks = None
        out.input_visual = input_visual
        out.memory = memory
        out.placement = where
        return out

    def _layer_ctx(
        self,
        layer_idx: int,
        memory: dict[str, Any],
        generator: torch.Generator,
        rows: Callable[[TokenState, int], torch.Tensor],
        keys: Callable[[TokenState], torch.Tensor] | None = None,
        where: Placement | None = None,
    ) -> StageContext:
        return StageContext(
            hook="layer",
            num_layers=self.num_layers,
            generator=generator,
            memory=memory,
            layer=layer_idx,
            _attention=rows,
            _keys=keys or self._pre_keys(self.layers[layer_idx]),
            _final_norm=self.norm if where is None else self._final_norm(where),
        )

    def _pre_keys(self, layer: nn.Module) -> Callable[[TokenState], torch.Tensor]:
        """Post-RoPE keys of ``layer`` computed from its own projections on a state not yet attended."""

        def keys(st: TokenState) -> torch.Tensor:
            x = layer.input_layernorm(st.hidden)
            cos, sin = self._rope(x, st.position)
            return self._keys(layer, x, cos, sin)

        return keys

    def _pre_rows(self, layer: nn.Module) -> Callable[[TokenState, int], torch.Tensor]:
        """Attention rows of ``layer`` computed from its own q/k on a state not yet attended: the keys
        of every token, the queries of the ``num_queries`` rows asked for only, no values."""

        def rows(st: TokenState, num_queries: int) -> torch.Tensor:
            x = layer.input_layernorm(st.hidden)
            cos, sin = self._rope(x, st.position)
            n = len(st)
            first = n - num_queries
            q = self._queries(layer, x[first:], cos[first:], sin[first:])
            qi = torch.arange(first, n, device=st.device)
            return attention_rows(q, self._keys(layer, x, cos, sin), qi, self.scaling)

        return rows

    def _prefill_drop(
        self,
        state: TokenState,
        plan: PruningPlan,
        max_new_tokens: int,
        clock: Clock,
        memory: dict[str, Any],
        gens: Generators,
        residual: ResidualFn | None,
        where: Placement,
    ) -> PrefillResult:
        caches: list[LayerCache] = []
        # Token counts stay on the device until the end: reading them per layer would synchronise
        # the host with the GPU twice a layer and leave the GPU idle while the next layer launches.
        sizes: list[tuple[int, int]] = []
        visual: list[torch.Tensor] = []
        rope_for: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        current = where.embed
        for idx, layer in enumerate(self.layers):
            device = where.layers[idx]
            if device != current:  # a device boundary: the state and its RoPE tables move with it
                moved = move_state(state, device)
                if rope_for is not None and rope_for[0] is state.position:
                    rope_for = (moved.position, rope_for[1].to(device), rope_for[2].to(device))
                state, current = moved, device
            generator = gens.on(device)
            pre = plan.at_layer(idx, "pre")
            if pre:
                state = self.run_stages(
                    pre,
                    state,
                    lambda s, i=idx, ly=layer, g=generator: self._layer_ctx(
                        i, memory, g, self._pre_rows(ly), where=where
                    ),
                    clock,
                )
            h = state.hidden
            x = layer.input_layernorm(h)
            if rope_for is None or rope_for[0] is not state.position:  # positions change only when tokens do
                rope_for = (state.position, *self._rope(x, state.position))
            cos, sin = rope_for[1], rope_for[2]
            q, k, v = self._qkv(layer, x, cos, sin)
            caches.append(self._new_cache(k, v, state, max_new_tokens))
            h = h + layer.self_attn.o_proj(self._attend(q, k, v, None))
            attn_n = len(state)
            attn_visual = state.is_visual.sum()
            visual.append(attn_visual)
            state = state.with_hidden(h)
            post = plan.at_layer(idx, "post")
            if post:
                attended = state.source

                def rows(
                    st: TokenState,
                    num_queries: int,
                    q: torch.Tensor = q,
                    k: torch.Tensor = k,
                    src: torch.Tensor = attended,
                ) -> torch.Tensor:
                    # The attention this layer actually computed; a second post stage at the same layer
                    # sees the columns of the tokens the first one left (sources stay sorted).
                    n = k.shape[1]
                    qi = torch.arange(n - num_queries, n, device=k.device)
                    out = attention_rows(q[:, qi], k, qi, self.scaling)
                    return out if len(st) == n else out[..., torch.searchsorted(src, st.source)]

                def keys(st: TokenState, k: torch.Tensor = k, src: torch.Tensor = attended) -> torch.Tensor:
                    return k if len(st) == k.shape[1] else k[:, torch.searchsorted(src, st.source)]

                state = self.run_stages(
                    post,
                    state,
                    lambda s, i=idx, r=rows, ks=keys, g=generator: self._layer_ctx(
                        i, memory, g, r, ks, where=where
                    ),
                    clock,
                )
            h = state.hidden
            h = h + self._mlp(layer, h)
            if residual is not None and (extra := residual(idx, state.source)) is not None:
                h = h + extra.to(device=h.device, dtype=h.dtype)
            state = state.with_hidden(h)
            sizes.append((attn_n, len(state)))
            visual.append(state.is_visual.sum() if post else attn_visual)  # only a post stage changes it
        logits = self._logits(state.hidden[-1:], where)
        vis = _stack_on(visual, where.embed).tolist() if visual else []
        counts = [LayerCount(a, vis[2 * i], m, vis[2 * i + 1]) for i, (a, m) in enumerate(sizes)]
        return PrefillResult(logits=logits, caches=caches, counts=counts, state=state, input_visual=0)

    def _prefill_mask(
        self,
        full: TokenState,
        plan: PruningPlan,
        max_new_tokens: int,
        clock: Clock,
        memory: dict[str, Any],
        gens: Generators,
        vision: Callable[[], VisionAttention] | None,
        residual: ResidualFn | None,
        where: Placement,
    ) -> PrefillResult:
        n = len(full)
        alive = torch.ones(n, dtype=torch.bool, device=full.device)
        causal = torch.ones(n, n, dtype=torch.bool, device=full.device).tril()
        caches: list[LayerCache] = []
        counts: list[LayerCount] = []

        def apply(stages: tuple[Stage, ...], make_ctx: Callable[[Stage], StageContext]) -> None:
            nonlocal full, alive
            compact = full.keep_mask(alive)
            new = self.run_stages(stages, compact, make_ctx, clock)
            full, alive = _scatter_back(full, new)

        for hook in PRE_LLM:
            stages = tuple(s for s in plan.pre_llm if s.hook == hook)
            if stages:
                apply(
                    stages,
                    lambda s, h=hook: StageContext(
                        hook=h,
                        num_layers=self.num_layers,
                        generator=gens.on(where.embed),
                        memory=memory,
                        _vision=vision,
                    ),
                )

        current = where.embed
        for idx, layer in enumerate(self.layers):
            device = where.layers[idx]
            if device != current:  # a device boundary: the state and the masks move with it
                full, alive, causal = move_state(full, device), alive.to(device), causal.to(device)
                current = device
            generator = gens.on(device)
            pre = plan.at_layer(idx, "pre")
            if pre:
                apply(
                    pre,
                    lambda s, i=idx, ly=layer, g=generator: self._layer_ctx(
                        i, memory, g, self._pre_rows(ly), where=where
                    ),
                )
            h = full.hidden
            x = layer.input_layernorm(h)
            cos, sin = self._rope(x, full.position)
            q, k, v = self._qkv(layer, x, cos, sin)
            seen = alive.clone()
            cache = self._new_cache(k, v, full, max_new_tokens)
            cache.visible = seen
            caches.append(cache)
            attn_n = int(seen.sum())
            attn_vis = int((seen & (full.kind == TokenKind.VISUAL)).sum())
            h = h + layer.self_attn.o_proj(self._attend(q, k, v, (causal & seen[None, :])[None, None]))
            full = full.with_hidden(h)
            post = plan.at_layer(idx, "post")
            if post:
                alive_idx = torch.nonzero(seen).flatten()

                attended = full.source[alive_idx]

                def rows(
                    st: TokenState,
                    num_queries: int,
                    q: torch.Tensor = q,
                    k: torch.Tensor = k,
                    ai: torch.Tensor = alive_idx,
                    src: torch.Tensor = attended,
                ) -> torch.Tensor:
                    m = ai.numel()
                    qi = torch.arange(m - num_queries, m, device=k.device)
                    out = attention_rows(q[:, ai[qi]], k[:, ai], qi, self.scaling)
                    return out if len(st) == m else out[..., torch.searchsorted(src, st.source)]

                def keys(
                    st: TokenState,
                    k: torch.Tensor = k,
                    ai: torch.Tensor = alive_idx,
                    src: torch.Tensor = attended,
                ) -> torch.Tensor:
                    seen_k = k[:, ai]
                    return seen_k if len(st) == ai.numel() else seen_k[:, torch.searchsorted(src, st.source)]

                apply(
                    post,
                    lambda s, i=idx, r=rows, ks=keys, g=generator: self._layer_ctx(
                        i, memory, g, r, ks, where=where
                    ),
                )
            h = full.hidden
            h = h + self._mlp(layer, h)
            if residual is not None and (extra := residual(idx, full.source)) is not None:
                extra = extra.to(device=h.device, dtype=h.dtype)
                h = h + torch.where(alive[:, None], extra, 0)  # the pruned receive nothing
            full = full.with_hidden(h)
            counts.append(
                LayerCount(
                    attn_n, attn_vis, int(alive.sum()), int((alive & (full.kind == TokenKind.VISUAL)).sum())
                )
            )
        last = int(torch.nonzero(alive).flatten()[-1])
        logits = self._logits(full.hidden[last : last + 1], where)
        return PrefillResult(
            logits=logits, caches=caches, counts=counts, state=full.keep_mask(alive), input_visual=0
        )

    def _new_cache(self, k: torch.Tensor, v: torch.Tensor, state: TokenState, extra: int) -> LayerCache:
        n = k.shape[1]
        if extra == 0:
            return LayerCache(k, v, n, _layout_only(state))
        key = k.new_empty(k.shape[0], n + extra, k.shape[2])
        value = v.new_empty(v.shape[0], n + extra, v.shape[2])
        key[:, :n] = k
        value[:, :n] = v
        return LayerCache(key, value, n, _layout_only(state))

    # --------------------------------------------------------------------------------- decode
    @torch.no_grad()
    def decode_step(
        self,
        token_id: int,
        position: int,
        step: int,
        prefill: PrefillResult,
        plan: PruningPlan,
        clock: Clock,
    ) -> torch.Tensor:
        """Run one generated token through every layer, appending to each layer's cache; the token's
        hidden state, its RoPE tables and a decode stage's choice move where the prefill's layers did."""
        caches = prefill.caches
        where = prefill.placement or self.placement()
        device = where.embed
        h = self.embed(torch.tensor([token_id], device=device))
        pos = torch.tensor([position], device=device)
        if prefill.state.position.dim() == 2:
            pos = pos[None].expand(prefill.state.position.shape[0], 1)
        cos = sin = None
        visible_sources: torch.Tensor | None = None
        restrict_from: int | None = None
        decode_stages = {s.layer: s for s in plan.decode}
        current = device
        for idx, layer in enumerate(self.layers):
            if where.layers[idx] != current:  # a device boundary
                current = where.layers[idx]
                h, pos = h.to(current), pos.to(current)
                if cos is not None and sin is not None:
                    cos, sin = cos.to(current), sin.to(current)
                if visible_sources is not None:
                    visible_sources = visible_sources.to(current)
            x = layer.input_layernorm(h)
            if cos is None:
                cos, sin = self._rope(x, pos)
            q, k, v = self._qkv(layer, x, cos, sin)
            cache = caches[idx]
            cache.append(k[:, 0], v[:, 0])
            keys, values = cache.key[:, : cache.length], cache.value[:, : cache.length]
            keep = self._decode_visibility(
                cache, visible_sources if restrict_from is not None and idx >= restrict_from else None
            )
            if keep is not None:
                keys, values = keys[:, keep], values[:, keep]
            h = h + layer.self_attn.o_proj(self._attend(q, keys, values, None))
            h = h + self._mlp(layer, h)
            stage = decode_stages.get(idx + 1)
            if stage is not None:
                with clock.measure("decode_pruning"), clock.measure(f"stage:{stage.name}"):
                    ctx = DecodeContext(
                        step=step,
                        layer=idx + 1,
                        cache_layout=cache.layout,
                        memory=prefill.memory,
                        _attention=lambda q=q, c=cache: self._decode_rows(q, c),
                    )
                    visible_sources = stage.fn(ctx)  # type: ignore[assignment]
                restrict_from = idx + 1
        return self._logits(h, where)

    def _decode_rows(self, q: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """Current token's attention over the prompt entries of ``cache``, mean over heads, ``[n]``.

        Taken over the layer's whole cache (what the unrestricted layer attends to); in mask mode
        the entries the layer never saw are masked out, so both modes give the same row.
        """
        n_prompt = cache.layout.source.numel()
        keys = cache.key[:, : cache.length]
        key_mask = None
        if cache.visible is not None:
            key_mask = torch.ones(cache.length, dtype=torch.bool, device=keys.device)
            key_mask[:n_prompt] = cache.visible
        last = torch.tensor([cache.length - 1], device=q.device)
        rows = attention_rows(q, keys, last, self.scaling, key_mask=key_mask)
        return rows[:, 0, :n_prompt].mean(0)

    @staticmethod
    def _decode_visibility(cache: LayerCache, visible_sources: torch.Tensor | None) -> torch.Tensor | None:
        """Indices of the cache entries the current token may attend to (``None``: all)."""
        if cache.visible is None and visible_sources is None:
            return None
        n_prompt = cache.layout.source.numel()
        keep = torch.ones(cache.length, dtype=torch.bool, device=cache.key.device)
        if cache.visible is not None:
            keep[:n_prompt] = cache.visible
        if visible_sources is not None:
            visual = cache.layout.kind == TokenKind.VISUAL
            keep[:n_prompt] &= ~visual | torch.isin(cache.layout.source, visible_sources)
        return torch.nonzero(keep).flatten()


def _text_tokens_kept(before: TokenState, after: TokenState) -> torch.Tensor:
    """Device bool: ``after`` has as many non-visual tokens as ``before``. Stages only keep and merge
    tokens (``TokenState`` has no way to add one), so an equal count means every text token survived."""
    return (before.kind != TokenKind.VISUAL).sum() == (after.kind != TokenKind.VISUAL).sum()


def _raise_for_text_checks(checks: list[tuple[str, torch.Tensor]]) -> None:
    """Raise for the first stage that removed non-visual tokens without declaring ``touches_text``
    (one host read for all of them)."""
    if not checks:
        return
    kept = _stack_on([ok for _, ok in checks], checks[0][1].device).tolist()
    for (name, _), ok in zip(checks, kept, strict=True):
        if not ok:
            raise RuntimeError(
                f"stage {name!r} removed non-visual tokens without declaring touches_text=True"
            )


def _stack_on(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """``torch.stack`` of per-layer scalars, brought to one device first when layers sat on several."""
    if any(t.device != device for t in tensors):
        tensors = [t.to(device) for t in tensors]
    return torch.stack(tensors)


def _scatter_back(full: TokenState, new: TokenState) -> tuple[TokenState, torch.Tensor]:
    """Mask mode: write a stage's result back onto the full sequence; return it and the alive mask."""
    alive = torch.zeros(len(full), dtype=torch.bool, device=full.device)
    alive[new.source] = True
    hidden = full.hidden.clone()
    hidden[new.source] = new.hidden
    position = full.position.clone()
    position[..., new.source] = new.position
    weight = full.weight.clone()
    weight[new.source] = new.weight
    segment = full.segment.clone()
    segment[new.source] = new.segment
    return (
        replace(
            full,
            hidden=hidden,
            position=position,
            weight=weight,
            segment=segment,
            next_position=new.next_position,
        ),
        alive,
    )
