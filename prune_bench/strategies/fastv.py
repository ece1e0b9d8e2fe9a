"""FastV: "An Image is Worth 1/2 Tokens After Layer 2" (Chen et al., ECCV 2024, arXiv 2403.06764).

Followed: the authors' code, github.com/pkunlp-icler/FastV at commit d165972. The in-place selection
(the ``use_fast_v and fast_v_inplace`` branch) is in ``LlamaModel.forward`` of the transformers fork
the README names as the main implementation and its LLaVA-1.5 inference scripts use,
``src/transformers/src/transformers/models/llama/modeling_llama.py``, which keeps a given count
``fast_v_attention_rank``; the llava-hf fork's ``LlamaModel.fastv_forward``
(``src/FastV/llava-hf/transformers/src/transformers/models/llama/modeling_llama.py``) drops the same
way and computes that count as ``round(N * (1 - R))``, which is the count we use:

1. layers ``0 .. K-1`` run on every token; layer ``K-1`` returns its attention weights;
2. score = attention of the **last prompt token** (the code's ``[-1]`` row, not the paper's average
   over all queries, see FastV issues #14/#44), mean over heads, restricted to the visual span;
3. keep the top ``round(N * (1 - R))`` visual tokens in ONE global ranking over all frames, plus
   every non-visual token; sort the kept indices;
4. layers ``K ..`` run on the short sequence with ``position_ids = keep_indices``: original
   positions are kept (RoPE sees the gaps).

Defaults are the paper's: ``K = 2`` and ``R = 50 %`` dropped, i.e. ``keep = 0.5``.

How it maps onto this framework: the drop is a ``"post"`` stage at layer ``K - 1``. Its attention
rows are the rows layer ``K - 1`` computes from its own q/k (as FastV's ``output_attentions`` at
``K - 1``), and ``DecoderRunner`` removes the dropped tokens after that layer's attention and
before its MLP. The MLP is per token, so every kept token's output of layer ``K - 1`` is
bit-for-bit what it is when the whole layer runs first, layer ``K - 1``'s KV cache holds every
token (its attention saw them all) and layers ``>= K`` never see a dropped token: the model output
is identical to FastV's "drop before layer K". Only the accounting differs: the skipped MLP work
of layer ``K - 1`` is real and the ledger counts that layer as half pruned.

Budgets (``for_budget``):

* ``"input"``: ``keep`` is the fraction of visual tokens kept at layer K (FastV's ``1 - R``), the
  same convention ``random`` uses for an in-LLM drop;
* ``"layer-average"`` (and ``"flops"``, for which the token average is a close proxy because
  FLOPs are nearly linear in tokens at video lengths): ``keep = (K - 1/2 + (L - K + 1/2) r) / L``
  solved for ``r``, which is how the VisionZip/SparseVLM tables count FastV (FastV issue #22,
  SparseVLM issue #12). Below ``(K - 1/2) / L`` the target is unreachable: we keep no visual token
  after layer K and warn.

Where we differ, and why:

* The LLaVA-OneVision ``image_newline`` token closing the video is not visual here, so it is never
  pruned; FastV's span ``[image_token_start_index, +image_token_length)`` would include it when
  set to the whole video placeholder run (FastV issue #28).
* Attention rows are computed exactly from q/k (no eager layer, no second forward of layer K-1 and
  so no duplicated KV cache, FastV issues #18/#46).
* Precision at the cut-off. Both forks' attention softmax runs in float32 and is then cast to the
  model dtype (``softmax(..., dtype=torch.float32).to(query_states.dtype)``: fp16 or bf16), and
  the head mean and ``topk`` run on that; ours rank the float32 rows. Scores that differ by less
  than an fp16/bf16 step tie in the official code (``topk``'s tie order decides) and are ordered
  by their float32 values here, so at the cut-off the kept set can differ by the tied tokens.
* FastV's ``K = 0`` random-drop fallback is not offered; use the ``random`` strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.ledger import full_layers, kept_for_layer_average
from prune_bench.core.stages import Stage
from prune_bench.core.state import TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig, warn_budget
from prune_bench.errors import UserError
from prune_bench.strategies.common.select import last_token_visual_attention, topk_visual


class FastVConfig(StrategyConfig):
    k: int = Field(
        2, ge=1, description="prune before decoder layer K, ranking by layer K-1's attention (paper: 2)"
    )
    keep: float = Field(
        0.5, ge=0, le=1, description="fraction of visual tokens kept from layer K on (paper: 1 - R, R = 50%)"
    )


def fastv_keep_count(num_visual: int, keep: float) -> int:
    """FastV's ``round(image_token_length * (1 - R))``."""
    return round(num_visual * keep)


class FastV(Strategy):
    name = "fastv"
    summary = "drop visual tokens at layer K by the last prompt token's attention at K-1 (arXiv 2403.06764)"
    Config = FastVConfig
    config: FastVConfig

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        probe = cast(FastVConfig, cls.make_config(**options))
        if unit == "input":
            return cls(config=probe.model_copy(update={"keep": keep}))
        # Layers 0..K-2 and the attention half of layer K-1 see every visual token.
        full = full_layers(probe.k - 1, "post")
        ratio = kept_for_layer_average(keep, model.num_layers, full)
        if ratio < 0:
            warn_budget(cls.name, keep, full / model.num_layers, f"layers before K={probe.k} see every token")
            ratio = 0.0
        return cls(config=probe.model_copy(update={"keep": min(1.0, ratio)}))

    def attention_prune(self, state: TokenState, ctx: StageContext) -> TokenState:
        if state.num_visual == 0:
            return state
        scores = last_token_visual_attention(state, ctx)
        return topk_visual(state, scores, fastv_keep_count(state.num_visual, self.config.keep))

    def stages(self, model: ModelInfo) -> list[Stage]:
        k = self.config.k
        if k >= model.num_layers:
            raise UserError(f"fastv: k={k} must be below the model's {model.num_layers} layers")
        return [Stage("fastv.attention_prune", "layer", self.attention_prune, layer=k - 1, site="post")]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(FastV)
