"""DART: "Stop Looking for Important Tokens in Multimodal Language Models: Duplication Matters More"
(Wen et al., EMNLP 2025, arXiv 2502.11494), Duplication-Aware Reduction of Tokens.

Followed: the authors' code, github.com/ZichenWen1/DART at commit 5a19452 (read from the fork
github.com/xqy1111111/DART, whose history holds upstream up to 5a19452; upstream's later commits
seen here touch the README only): ``get_retained_image_token`` and the pruning branch of the decoder
loop in ``llava/model/language_model/modeling_llama_self.py`` (LLaVA-1.5 / LLaVA-NeXT),
``Qwen2-VL/Qwen2VL_DART/modeling_qwen2_vl_self.py`` and ``Qwen2_5-VL/Qwen2_5VL_DART/
modeling_qwen2_5_vl_self.py``, with the eval scripts' settings (``scripts/v1_5/eval/*.sh``,
``llava/eval/model_vqa_loader.py``, ``*/eval_scripts/lmms_eval.sh`` and the lmms-eval wrappers). The
three copies of the selection are the same apart from the per-pivot count (below). What the code does:

1. Layers ``0 .. K-1`` run on every token (``K = 2``). Before layer ``K`` it takes layer ``K-1``'s
   outputs: the post-RoPE **keys** that layer attended with, and its output hidden states passed
   through the model's FINAL norm (``self.norm``, the one before the LM head).
2. **Pivots.** The L1 norm of each token's keys (all heads concatenated); the ``pivot_image_token = 4``
   visual tokens with the largest norm, and the ``pivot_text_token = 4`` largest among the tokens
   after the visual span (the question and everything after it).
3. **Duplication.** ``TOKEN_TOPK`` per pivot: ``int(N (1 - r) / 8)`` on Qwen2-VL / Qwen2.5-VL
   (``r = reduction_ratio``, 0.778 in the scripts), ``floor(max_num_trunction / 8)`` on LLaVA (128 in
   the scripts, i.e. 16; ``N (1 - r)`` when it is None), 8 being the pivot count. For each pivot in
   turn, among the visual tokens not yet taken (the image pivots excluded), the ``TOKEN_TOPK`` with the
   LOWEST cosine similarity to the pivot (normed hidden states) are taken.
4. The kept visual tokens are the image pivots and everything taken: ``4 + 8 TOKEN_TOPK`` of them;
   all other tokens stay. Layers ``K ..`` run on them with their **original positions**
   (``position_ids = keep_indexs`` on LLaVA, the sliced M-RoPE ids on Qwen).

Here that is two ``layer`` stages: ``dart.pivot_keys`` at layer ``K-1``, site ``post`` (its attention
has run: the keys it used, ``ctx.layer_keys``, give every token's L1 norm, kept in ``ctx.memory``; it
returns the state unchanged), and ``dart.duplication_prune`` at layer ``K``, site ``pre`` (the state
holds layer ``K-1``'s outputs; ``ctx.final_norm`` normalises them), which selects as in steps 2-4.
The per-pivot picks are one masked top-k per pivot over a ``[visual, pivots]`` cosine matrix: a loop
over the 8 pivots, never over tokens.

Defaults are the code's: ``k = 2``, ``reduction_ratio = 0.778``, ``pivot_image_tokens = 4``,
``pivot_text_tokens = 4``, ``max_num_truncation = None`` (the Qwen path: the count follows the
ratio; the LLaVA-1.5 scripts' 128 is an absolute count for 576-token images and is not a default for
videos of any length).

Budgets (``for_budget``), as FastV's, since DART drops once before layer ``K``:

* ``"input"``: ``keep`` is the fraction of visual tokens kept from layer ``K`` on: ``r = 1 - keep``.
* ``"layer-average"`` (and ``"flops"``): ``keep = (K + (L - K) f) / L`` solved for the fraction ``f``
  kept after layer ``K``, then ``r = 1 - f``. Below ``K / L`` the target is unreachable (layers before
  ``K`` see every token): ``r = 1`` keeps only the image pivots, with a warning.

The count itself is the code's ``4 + 8 floor(N (1 - r) / 8)``: up to 4 more or 3 fewer tokens than
``N (1 - r)``, never below the 4 image pivots.

Where we differ, and why:

* Pivot order. The code walks the pivots as ``for item in list(indices_set)``, a Python ``set`` of
  token indices: CPython's hash-table order (roughly by index modulo the table size, 32 slots for 8
  pivots), not a ranking. The order matters where two pivots' least similar tokens overlap (the
  earlier pivot takes them). We walk the image pivots by descending key norm, then the text pivots
  by descending key norm (the order the code lists them in before making the set).
* Video. DART's code prunes one image: LLaVA at a fixed span (``image_token_start_index = 35``,
  ``image_token_length = 576``); the Qwen lmms-eval wrappers locate the span from the first
  ``<|image_pad|>`` (151655) to ``<|vision_end|>``, so a video prompt (``<|video_pad|>``) raises there.
  We treat a video's visual tokens (all frames) as the span, with one global selection.
* The "text after the span" is every non-visual token after the last visual token: on
  LLaVA-OneVision that includes the ``image_newline`` token that closes the video (the newline token
  is not visual here, so it is never pruned; it can be a pivot, as the code's span end would make it).
* LLaVA-NeXT's count (``retain_token_num_for_llava_next``, 320 capped at ``N - 4``, used when the
  eval script sets ``text_length``) is not offered: ``max_num_truncation`` is the one absolute count.
* Counts are capped by what is available (the code's ``topk`` raises when fewer than 4 text tokens
  follow the span, or when fewer candidates remain than ``TOKEN_TOPK``).
* Precision: key norms and cosines in float32 (the code: fp16/bf16, ``cosine_similarity``'s eps).
  Grouped-query keys are not expanded (the code's eager / sdpa paths ``repeat_kv`` them first, which
  multiplies every norm by the group size and changes no ranking).
* Decoding positions: as the code, decode tokens continue after the unpruned prompt
  (``position_policy="keep"``, the code's behaviour).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.ledger import full_layers, kept_for_layer_average, warn_budget
from prune_bench.core.stages import Stage
from prune_bench.core.state import TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig
from prune_bench.errors import UserError
from prune_bench.strategies.common.select import keep_visual_subset

#: ``ctx.memory`` key of the ``(source, key L1 norm)`` pair the layer ``K-1`` stage leaves.
KEY_NORMS = "dart.key_l1"


class DARTConfig(StrategyConfig):
    k: int = Field(
        2, ge=1, description="prune before decoder layer K, from layer K-1's keys and outputs (code: 2)"
    )
    reduction_ratio: float = Field(
        0.778,
        ge=0,
        le=1,
        description="r: about N (1 - r) visual tokens are kept from layer K on (scripts: 0.778)",
    )
    pivot_image_tokens: int = Field(4, ge=0, description="visual pivots: largest key L1 norm (code: 4)")
    pivot_text_tokens: int = Field(
        4, ge=0, description="text pivots among the tokens after the video: largest key L1 norm (code: 4)"
    )
    max_num_truncation: int | None = Field(
        None,
        ge=0,
        description="LLaVA path: an absolute count to split among the pivots instead of N (1 - r) (scripts: 128)",
    )


def tokens_per_pivot(num_visual: int, cfg: DARTConfig) -> int:
    """The code's ``TOKEN_TOPK``: ``floor(max_num_trunction or N (1 - r))`` split over the pivots."""
    pivots = cfg.pivot_image_tokens + cfg.pivot_text_tokens
    total = (
        cfg.max_num_truncation
        if cfg.max_num_truncation is not None
        else num_visual * (1 - cfg.reduction_ratio)
    )
    return int(total // pivots)


def dart_keep_count(num_visual: int, cfg: DARTConfig) -> int:
    """Visual tokens DART keeps out of ``num_visual``: the image pivots and every pivot's picks."""
    pivots = min(cfg.pivot_image_tokens, num_visual)
    picks = (cfg.pivot_image_tokens + cfg.pivot_text_tokens) * tokens_per_pivot(num_visual, cfg)
    return pivots + min(picks, num_visual - pivots)


def duplication_aware_keep(
    hidden: torch.Tensor,
    key_norm: torch.Tensor,
    visual: torch.Tensor,
    after: torch.Tensor,
    cfg: DARTConfig,
) -> torch.Tensor:
    """Boolean mask over ``visual`` (indices into ``hidden``) of the visual tokens DART keeps.

    :param hidden: ``[N, D]`` the final-normed hidden states. :param key_norm: ``[N]`` key L1 norms.
    :param visual: visual token indices. :param after: indices of the tokens after the visual span.
    """
    n = visual.numel()
    n_img = min(cfg.pivot_image_tokens, n)
    image_pivots = torch.topk(key_norm[visual].float(), n_img).indices  # positions within ``visual``
    text_pivots = after[
        torch.topk(key_norm[after].float(), min(cfg.pivot_text_tokens, after.numel())).indices
    ]
    pivots = torch.cat([visual[image_pivots], text_pivots])
    x = F.normalize(hidden.float(), dim=-1)
    cos = x[visual] @ x[pivots].T  # [n, pivots]
    kept = torch.zeros(n, dtype=torch.bool, device=hidden.device)
    kept[image_pivots] = True
    available = ~kept
    per_pivot, remaining = tokens_per_pivot(n, cfg), n - n_img
    for j in range(pivots.numel()):  # the code's pivot loop: sequential, each takes from what is left
        take = max(0, min(per_pivot, remaining - j * per_pivot))
        if take == 0:
            break
        least_similar = (-cos[:, j]).masked_fill(~available, -math.inf)
        picked = torch.topk(least_similar, take).indices
        kept[picked] = True
        available[picked] = False
    return kept


class DART(Strategy):
    name = "dart"
    summary = "keep pivot tokens (key L1 norm) and the tokens least like them, at layer K (arXiv 2502.11494)"
    Config = DARTConfig
    config: DARTConfig
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "visual pivots only": {"pivot_text_tokens": 0, "pivot_image_tokens": 8},
        "text pivots only": {"pivot_image_tokens": 0, "pivot_text_tokens": 8},
        "one pivot of each": {"pivot_image_tokens": 1, "pivot_text_tokens": 1},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        probe = cast(DARTConfig, cls.make_config(**options))
        if unit == "input":
            return cls(config=probe.model_copy(update={"reduction_ratio": 1.0 - keep}))
        full = full_layers(probe.k, "pre")
        fraction = kept_for_layer_average(keep, model.num_layers, full)
        if fraction < 0:
            warn_budget(cls.name, keep, full / model.num_layers, f"layers before K={probe.k} see every token")
            fraction = 0.0
        return cls(config=probe.model_copy(update={"reduction_ratio": 1.0 - min(1.0, fraction)}))

    def pivot_keys(self, state: TokenState, ctx: StageContext) -> TokenState:
        keys = ctx.layer_keys(state)  # [KV, N, hd], what layer K-1 attended with
        ctx.memory[KEY_NORMS] = (state.source, keys.float().abs().sum(dim=(0, 2)))
        return state

    def duplication_prune(self, state: TokenState, ctx: StageContext) -> TokenState:
        visual = state.visual_index
        if visual.numel() == 0:
            return state
        source, norms = ctx.memory[KEY_NORMS]
        key_norm = norms[torch.searchsorted(source, state.source)]
        after = torch.arange(int(visual[-1]) + 1, len(state), device=state.device)
        hidden = ctx.final_norm(state.hidden)
        return keep_visual_subset(state, duplication_aware_keep(hidden, key_norm, visual, after, self.config))

    def stages(self, model: ModelInfo) -> list[Stage]:
        cfg = self.config
        if cfg.k >= model.num_layers:
            raise UserError(f"dart: k={cfg.k} must be below the model's {model.num_layers} layers")
        if cfg.pivot_image_tokens + cfg.pivot_text_tokens == 0:
            raise UserError(
                "dart: at least one pivot is needed: set pivot_image_tokens or pivot_text_tokens > 0"
            )
        return [
            Stage("dart.pivot_keys", "layer", self.pivot_keys, layer=cfg.k - 1, site="post"),
            Stage("dart.duplication_prune", "layer", self.duplication_prune, layer=cfg.k, site="pre"),
        ]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(DART)
