"""CDPruner: "Beyond Attention or Similarity: Maximizing Conditional Diversity for Token Pruning in
MLLMs" (Zhang et al., NeurIPS 2025, arXiv 2506.10967).

Followed: the authors' code, github.com/Theia-4869/CDPruner at commit 9541616 (the selection has been
unchanged since 58190f6; the commits after it touch the README only): ``encode_images`` in
``llava/model/llava_arch.py``, ``CLIPVisionTower.forward`` / ``load_text_tower`` in
``llava/model/multimodal_encoder/clip_encoder.py`` and the ``texts=`` each ``llava/eval/model_vqa*.py``
passes. That repository implements LLaVA-1.5 and LLaVA-1.6 (LLaVA-NeXT) only; it has no video, no
LLaVA-OneVision / LLaVA-Video and no Qwen2.5-VL code, so what happens to a video's frames below is
our extension of its multi-image (LLaVA-NeXT crops) path. What the code does:

1. **Instruction embedding.** The question text alone (each eval script passes the raw question,
   hint and options included, with the benchmark's answer-format line such as "Answer the question
   using a single word or phrase." removed; no chat template, no system prompt) goes through CLIP's
   text tower (``CLIPTextModelWithProjection``): one projected, pooled embedding per 77-token
   chunk of the question (zero-padded), ``M`` chunks (one for a question of at most 77 CLIP tokens).
2. **Relevance.** The vision tower's feature-layer patch outputs (the penultimate layer LLaVA
   selects) go through ``post_layernorm`` and ``visual_projection`` into CLIP's joint space;
   ``r_i = mean_m(-cos(v_i, t_m))``: the cosine is NEGATED (the authors' relevance visualisation
   script negates it too), then min-max normalised over every token of every image in the batch:
   ``r = (r - min r + 1e-6) / (max r - min r)``, so ``r`` lies in ``(0, 1 + eps]``. A commented-out
   knob ``theta`` (0.5 in the comment) would use ``exp(alpha r)``, ``alpha = theta / (2 (1 - theta))``,
   instead of ``r``; the code runs without it.
3. **Kernel.** ``S = cos`` between the projected visual tokens (the ``mm_projector`` outputs the LLM
   receives), in float32; ``L = diag(r) S diag(r)``.
4. **Greedy MAP.** Chen et al.'s fast greedy DPP MAP, batched over the images of a batch: exactly
   ``visual_token_num`` picks from each image (the largest residual ``d_j^2`` each step, no epsilon
   and no early stop), the picks sorted back into spatial order.
5. **Budget.** ``visual_token_num`` is an absolute count per image (the eval scripts' argument;
   the README's examples are 128 and 64 of LLaVA-1.5's 576). On LLaVA-NeXT each crop of the
   anyres grid (base image included) is one image of that batch: every crop keeps
   ``visual_token_num`` tokens (the README's "32 * 5 = 160"), while the min-max normalisation of
   step 2 runs over all crops together.
6. **Positions.** The kept tokens are spliced into the prompt and ``position_ids`` is ``None``, so
   positions are contiguous afterwards (``position_policy="reindex"``, the default here too).

Here the stage runs at the ``input`` hook on the LLM input embeddings of the video (the projected,
and on LLaVA-OneVision 2x2-pooled, visual tokens):

* relevance ``r_i = mean_t(-cos(x_i, e_t))`` between each visual token ``x_i`` and the LLM input
  embedding ``e_t`` (``embed_tokens``) of each instruction token ``t``: by default the text tokens
  after the video (``instruction="after_video"``; the question follows the video in every prompt this
  project builds), then min-max normalised over all visual tokens of the sample, as in step 2;
* ``L = diag(r) S diag(r)`` with ``S`` the cosine of the visual tokens, as in step 3;
* **per frame** by default (``scope="frame"``): every frame is one image of the batch, as LLaVA-NeXT's
  crops are, with one min-max normalisation over the whole video; ``scope="video"`` runs one DPP over
  every visual token of the video.
* the video keeps ``K = budget_count(N, keep) = round(N * keep)`` (at least 1) of its ``N`` visual
  tokens; per frame, ``K`` is spread in proportion to the frames' sizes
  (``floor(K C_f / N) - floor(K C_(f-1) / N)``, ``C`` the cumulative frame sizes), so frames of one size
  keep counts that differ by at most one token and the total is ``K`` exactly.

Defaults: ``keep = 128/576`` (the README's first example, GQA at 128 tokens on LLaVA-1.5),
``scope="frame"``, ``relevance_sign="negative"``, ``theta=None``, ``position_policy="reindex"``.

Budgets: CDPruner prunes before the LLM, so ``"input"``, ``"layer-average"`` and ``"flops"`` all set
``keep``, the fraction of visual tokens kept.

Where we differ, and why:

* Instruction embedding space (the main difference). The code embeds the question with CLIP's text
  tower and compares it with CLIP-projected patch features; LLaVA-OneVision / LLaVA-Video (SigLIP) and
  Qwen2.5-VL checkpoints ship no text tower aligned with their vision encoder, and an ``input``
  stage sees only the LLM input sequence. So relevance is a cosine in the LLM's input-embedding
  space: the projected visual tokens against the word embeddings of the instruction tokens, one
  per token rather than one pooled sentence embedding per 77-token chunk. (The mean of the cosines
  is the cosine with the mean of the normalised text embeddings times a constant, so after the
  min-max normalisation pooling first or last gives the same relevance.)
* Which text. The state carries no token ids, so the instruction is every text token after the
  video: the question with its options, and also the answer-format line the eval scripts strip and
  the chat template's closing tokens (``<|im_end|>``, the assistant header). ``instruction="all_text"``
  takes every text token of the prompt (system prompt included) instead.
* The negation is the code's, which applies it to CLIP's penultimate-layer patch features (its
  relevance visualisation script negates too); whether relevance in the LLM's embedding space should
  be negated is not established. ``relevance_sign="positive"`` (an ablation) drops it.
* Video. Per-frame selection (``scope="frame"``) is our reading of the crops path; the code never
  sees a video. LLaVA-OneVision pools each frame 2x2 after the projector; CDPruner in the authors'
  ``encode_images`` would select before that pooling, we select among the pooled tokens the LLM
  receives. On Qwen2-VL a "frame" is a layout frame (a pair of frames merged by the temporal patch).
* Budget as a fraction of the video's tokens instead of an absolute ``visual_token_num`` per image.
  The code keeps the same count from every crop; we spread ``round(N * keep)`` over the frames (above),
  because one count per frame, ``round(P * keep)``, misses small budgets by far (0.125 for 0.1 at 16
  tokens a frame), and may keep no token of a frame when ``K`` is below the number of frames.
  ``keep = 1`` keeps every token without running the DPP (the eval scripts' default
  ``--visual_token_num 576`` runs 576 picks to keep all of them).
* Greedy MAP. The shared batched greedy DPP (``strategies/common/dpp.py``, one batch over frames)
  instead of the code's loop. It differs in two guarded places: the code has no floor, so once a
  kernel's rank is exhausted (never at 576 tokens of a 4096-dimensional LLM, but possible for one DPP
  over a video's thousands of tokens, ``scope="video"``) ``sqrt`` of a residual that cancellation left
  at or below zero gives inf/NaN and ``argmax`` can return the same index again (duplicate picks,
  fewer distinct tokens than the budget); ours stops extending an exhausted kernel's factor and picks
  its remaining tokens by relevance (``common/dpp.py``). And its score
  is ``d_j^2 + 1e-5 L_jj``, so numerically equal residuals go to the more relevant token (the code:
  to the lowest index).
* Guards: a constant relevance (``max r = min r``, which divides by zero in the code) or a prompt
  without instruction tokens gives ``r = 1``, i.e. a similarity-only DPP; non-finite kernel entries
  count as 0 (``common/dpp.py``).
* Precision: everything in float32 (the code normalises the fp16 projector outputs in fp16 and
  casts to float32 for the similarity); the kernel is one ``torch.bmm`` (TF32 only where the user
  enables it for float32 matmuls).
* ``conditional=False`` (an ablation: the paper's DPP without the instruction) uses ``L = S``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench import (
    BudgetUnit,
    ModelInfo,
    Stage,
    StageContext,
    Strategy,
    StrategyConfig,
    TokenKind,
    TokenState,
    budget_count,
    hookimpl,
    keep_visual_subset,
)
from prune_bench.core.state import PositionPolicy
from prune_bench.strategies.common.dpp import greedy_dpp_map

#: The README's first example: 128 of LLaVA-1.5's 576 visual tokens (GQA).
DEFAULT_KEEP = 128 / 576
#: The numerator offset of the code's min-max normalisation (keeps the least relevant token's quality > 0).
MINMAX_OFFSET = 1e-6


class CDPrunerConfig(StrategyConfig):
    keep: float = Field(
        DEFAULT_KEEP,
        gt=0,
        le=1,
        description="fraction of visual tokens kept (README example: 128 of LLaVA-1.5's 576)",
    )
    scope: Literal["frame", "video"] = Field(
        "frame",
        description="'frame': one DPP per frame, as the code treats LLaVA-NeXT's crops; 'video': one DPP "
        "over all visual tokens",
    )
    relevance_sign: Literal["negative", "positive"] = Field(
        "negative", description="the code negates the text-visual cosine; 'positive' uses it as is"
    )
    theta: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="None = quality r, as coded; a value uses exp(alpha r), alpha = theta / (2 (1 - theta)) "
        "(the code's commented-out knob, 0.5 there)",
    )
    instruction: Literal["after_video", "all_text"] = Field(
        "after_video",
        description="text tokens whose LLM input embeddings form the instruction: those after the video, "
        "or every text token",
    )
    conditional: bool = Field(
        True, description="ablation: False = DPP on the visual similarity alone (no instruction relevance)"
    )
    position_policy: PositionPolicy = Field(
        "reindex", description="'reindex' as LLaVA's splice does (position_ids=None), or 'keep'"
    )


def instruction_index(state: TokenState, which: str = "after_video") -> torch.Tensor:
    """Indices (into ``state``) of the instruction tokens: the text tokens after the last non-text
    token (``"after_video"``), or every text token (``"all_text"``)."""
    text = state.kind == TokenKind.TEXT
    if which == "after_video":
        other = torch.nonzero(~text).flatten()
        if other.numel():
            after = torch.arange(len(state), device=state.device) > other.max()
            text = text & after
    return torch.nonzero(text).flatten()


def instruction_relevance(
    visual: torch.Tensor, text: torch.Tensor, sign: str = "negative", theta: float | None = None
) -> torch.Tensor:
    """CDPruner's relevance of each visual token, ``[n]`` float32.

    :param visual: ``[n, D]`` visual token features. :param text: ``[m, D]`` instruction embeddings.
    ``r = mean_t(±cos(v, t))``, min-max normalised with the code's ``+1e-6`` offset, then
    ``exp(alpha r)`` if ``theta`` is set. No text, or a constant ``r``: all ones."""
    n = visual.shape[0]
    if text.shape[0] == 0 or n == 0:
        r = visual.new_ones(n, dtype=torch.float32)
    else:
        cos = F.normalize(visual.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T  # [n, m]
        r = cos.mean(dim=-1)
        if sign == "negative":
            r = -r
        lo, span = r.min(), r.max() - r.min()
        r = torch.where(span > 0, (r - lo + MINMAX_OFFSET) / span.clamp_min(1e-30), torch.ones_like(r))
    if theta is not None:
        r = torch.exp(theta / (2 * (1 - theta)) * r)
    return r


def spread_budget(sizes: torch.Tensor, total: int) -> torch.Tensor:
    """``total`` tokens spread over groups of ``sizes`` (on the host) in proportion to their sizes:
    group g keeps ``floor(total * C_g / N) - floor(total * C_{g-1} / N)`` (``C`` the cumulative sizes),
    so the budgets add up to ``total`` exactly, none exceeds its group, and groups of one size get
    budgets that differ by at most one."""
    cum = torch.cumsum(sizes.long(), 0)
    n = int(cum[-1]) if cum.numel() else 0
    if n == 0:
        return torch.zeros_like(sizes)
    edge = torch.cat([cum.new_zeros(1), cum]) * total // n
    return edge[1:] - edge[:-1]


def conditional_dpp_keep(
    features: torch.Tensor, relevance: torch.Tensor, group: torch.Tensor, budgets: torch.Tensor
) -> torch.Tensor:
    """Boolean mask ``[n]`` of the tokens CDPruner keeps: greedy MAP of ``diag(r) S diag(r)`` within
    each group (frame), all groups in one batch.

    :param features: ``[n, D]``. :param relevance: ``[n]``. :param group: ``[n]`` group ids ``0..G-1``.
    :param budgets: ``[G]`` tokens to keep per group, on the host."""
    n = features.shape[0]
    sizes = torch.bincount(group, minlength=budgets.numel())
    order = torch.argsort(group, stable=True)
    offsets = torch.cumsum(sizes, 0) - sizes
    slot = torch.empty_like(group)
    slot[order] = torch.arange(n, device=group.device) - offsets[group[order]]
    sizes = sizes.cpu()
    x = F.normalize(features.float(), dim=-1) * relevance.float()[:, None]  # rows r_i * x_i / |x_i|
    padded = x.new_zeros(sizes.numel(), int(sizes.max()), x.shape[1])
    padded[group, slot] = x
    kernel = torch.bmm(padded, padded.transpose(1, 2))  # r_i cos(x_i, x_j) r_j
    return greedy_dpp_map(kernel, sizes, budgets)[group, slot]


class CDPruner(Strategy):
    name = "cdpruner"
    summary = (
        "conditional DPP (instruction relevance x visual similarity) at the LLM input (arXiv 2506.10967)"
    )
    Config = CDPrunerConfig
    config: CDPrunerConfig
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "w/o instruction (similarity-only DPP)": {"conditional": False},
        "positive relevance": {"relevance_sign": "positive"},
        "exponential quality (theta=0.5)": {"theta": 0.5},
        "one DPP over the video": {"scope": "video"},
        "original positions (no reindex)": {"position_policy": "keep"},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        return cls(config=cls.make_config(**options).model_copy(update={"keep": keep}))

    def select(self, state: TokenState, ctx: StageContext) -> TokenState:
        cfg = self.config
        vis = state.visual_index
        if vis.numel() == 0:
            return state
        if cfg.scope == "frame":
            _, group = torch.unique(state.frame[vis], return_inverse=True)
            counts = torch.bincount(group).cpu()
        else:
            group = torch.zeros_like(vis)
            counts = torch.tensor([vis.numel()])
        budgets = spread_budget(counts, budget_count(vis.numel(), cfg.keep))
        if bool((budgets >= counts).all()):
            return state
        features = state.hidden[vis]
        if cfg.conditional:
            text = state.hidden[instruction_index(state, cfg.instruction)]
            relevance = instruction_relevance(features, text, cfg.relevance_sign, cfg.theta)
        else:
            relevance = features.new_ones(vis.numel(), dtype=torch.float32)
        return keep_visual_subset(state, conditional_dpp_keep(features, relevance, group, budgets))

    def stages(self, model: ModelInfo) -> list[Stage]:
        return [
            Stage(
                "cdpruner.conditional_dpp", "input", self.select, position_policy=self.config.position_policy
            )
        ]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(CDPruner)
