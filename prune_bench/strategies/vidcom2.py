"""VidCom2: "Video Compression Commander: Plug-and-Play Inference Acceleration for Video Large Language
Models" (Liu, Wang, Ma and Zhang, EMNLP 2025, arXiv 2505.14454).

Followed: the authors' code, github.com/xuyang-liu16/VidCom2, branch ``qwen`` at commit a85d485
(``token_compressor/vidcom2/vidcom2.py``: ``vidcom2_compression``, ``select_low_var_channels``,
``compute_gaussian_scores``, ``compute_scales``, ``select_outlier_indices``; applied by
``token_compressor/vidcom2/models/llava.py`` for LLaVA-OneVision and by ``models/qwen2_5_vl.py``
``_compute_keep_indices`` / ``Qwen2_5_VLModel_forward`` for Qwen2.5-VL). The selection is the same on
``main`` (the LLaVA code) at 944a17d. What the code does, on one video's LLM input embeddings (the
projector output; on LLaVA-OneVision after its 2x2 pooling, on Qwen the merger output), ``[T, P, D]``:

1. **Channels.** The variance of every channel over all the video's tokens (``unbiased=False``);
   only the ``int(D * 0.5)`` channels of LOWEST variance are used by the scores below.
2. **Token uniqueness.** On those channels each token is L2-normalised; ``c_v`` is the mean of all
   the video's (normalised) tokens, ``c_t`` the mean of frame ``t``'s. A multi-scale Gaussian
   similarity ``g(x, c) = sum_a exp(-|x - c|^2 / (2a))`` over ``a = 2^-3 .. 2^1`` gives
   ``s_v = g(x, c_v)`` and ``s_f = g(x, c_t)``.
3. **Frame budgets** (the paper's frame compression adjustment). Frame uniqueness
   ``u_t = -mean_p s_v``; ``p = softmax((u - max u) / 0.01)`` over the frames;
   ``scale_t = min(1, R (1 + p_t - mean p))`` with ``R`` the ``R_RATIO`` environment variable
   (default 0.25); frame ``t`` keeps ``k_t = max(1, round(scale_t * P))`` tokens.
4. **Token selection.** In each frame the ``k_t`` tokens with the LOWEST ``s_v + s_f`` (the least like
   the video and the frame: the outliers), in their original order. Nothing is merged.
5. **Positions.** LLaVA-OneVision splices the kept tokens (then its ``image_newline``) into the prompt
   with ``position_ids=None``: contiguous positions afterwards. Qwen2.5-VL computes the M-RoPE
   positions of the unpruned prompt first and slices them with the kept indices: original positions.

Defaults: ``base_scale = 0.25`` (``R_RATIO``'s default, the README's examples), ``temperature = 0.01``,
``channel_ratio = 0.5``, adaptive frame budgets, ``s_v + s_f`` token scores, ``position_policy="auto"``
(``"keep"`` on the Qwen families, ``qwen2_vl`` and ``qwen3_vl``, ``"reindex"`` elsewhere, as the code paths do).

Budgets: VidCom2 prunes before the LLM, so ``"input"``, ``"layer-average"`` and ``"flops"`` all mean
the fraction of visual tokens entering it, and ``for_budget`` sets ``R = keep`` (``R_RATIO`` is that
fraction: the scales average to ``R`` over the frames). The count the video ends with is the code's
``sum_t k_t``: each frame's count is rounded and at least one token, and the cap at a whole frame drops
what the most unique frame would get beyond it. With a near one-hot ``p`` (the usual case at
temperature 0.01) that frame asks for ``R (2 - 1/T)`` of its tokens, so above ``keep ~ 0.5`` the cap
binds and the video keeps fewer than ``keep`` (at ``keep = 1`` the other frames keep ``1 - 1/T`` of
theirs); ``for_budget`` warns when the cap or the one-token floor will bind for such a ``p``.

Where we differ, and why:

* Precision. The code scores in the embeddings' dtype (bf16/fp16 on GPU: the variances, the
  normalisation, the Gaussians and ``scale_t * P`` before rounding); we score in float32. Near-ties
  and a ``round`` at ``.5`` can fall differently.
* Ties. ``torch.topk(largest=False, sorted=False)`` leaves the order of equal scores to the kernel;
  ours go to the earlier raster position (the shared ``topk_per_frame``, a stable sort).
* Qwen2-VL. The ``qwen`` branch's Qwen2-VL wrapper (``models/qwen2_vl.py``) treats what
  ``vidcom2_compression`` returns (the kept FEATURES, ``flat[global_idx]``) as kept indices and offsets
  them by a hard-coded system prompt of 15 tokens; we run the Qwen2.5-VL wrapper's path (indices per
  video, original M-RoPE positions) on both Qwen2-VL and Qwen2.5-VL checkpoints. A "frame" there is
  a layout frame (two input frames merged by the temporal patch), as in the code (``grid_thw[0]``).
* Layout from the state. The code hard-codes 196 tokens a frame for LLaVA-OneVision
  (``MODEL_SPECS``); we read ``P`` from the layout. Its LLaVA-Video path (``mm_newline_position="grid"``,
  13x13 with a newline token per row) keeps every newline; here newline tokens are not visual and are
  never scored or dropped either.
* The grid must be complete (every position of every frame), as at the LLM input: mounted after
  another pre-LLM stage that removed tokens, VidCom2 stops with an error instead of guessing a layout.
* At least one channel is scored (``max(1, int(D * ratio))``; the code's ``int`` gives none for
  ``D * ratio < 1``, which only a toy model reaches).
* ``frame_budgets="uniform"`` (every frame keeps ``round(R P)``) and ``token_score="video"`` /
  ``"frame"`` (one of the two similarities) are the paper's ablations, not code paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.ledger import warn_budget
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig
from prune_bench.strategies.common.select import topk_per_frame
from prune_bench.strategies.common.temporal import frame_grid_index

#: The code's Gaussian bandwidths ``a`` in ``exp(-d^2 / (2a))``: ``2**k`` for ``k = -3 .. 1``.
GAUSSIAN_SCALES: tuple[float, ...] = tuple(2.0**k for k in range(-3, 2))

#: Families whose VidCom2 wrapper slices the unpruned prompt's positions (Qwen's M-RoPE); LLaVA's
#: splice renumbers them.
ORIGINAL_POSITION_FAMILIES: frozenset[str] = frozenset({"qwen2_vl", "qwen3_vl"})


class VidCom2Config(StrategyConfig):
    base_scale: float = Field(
        0.25,
        gt=0,
        le=1,
        description="R (R_RATIO): the frames' mean retention; frame t keeps R (1 + p_t - 1/T)",
    )
    temperature: float = Field(
        0.01, gt=0, description="softmax temperature of the frame uniqueness (code: 0.01)"
    )
    channel_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of channels, lowest variance first, that the scores use (code: 0.5)",
    )
    frame_budgets: Literal["adaptive", "uniform"] = Field(
        "adaptive",
        description="'adaptive': per-frame budgets by frame uniqueness (code); 'uniform': round(R P) each (ablation)",
    )
    token_score: Literal["video+frame", "video", "frame"] = Field(
        "video+frame",
        description="similarity a token is ranked by (lowest kept): to the video and frame centres (code), or one",
    )
    position_policy: Literal["auto", "keep", "reindex"] = Field(
        "auto",
        description="'auto': original positions on qwen2_vl (its wrapper), contiguous elsewhere (LLaVA); or force one",
    )


def low_variance_channels(tokens: torch.Tensor, ratio: float) -> torch.Tensor:
    """The code's ``select_low_var_channels``: the ``int(D * ratio)`` columns of ``tokens`` ``[n, D]``
    with the lowest (biased) variance over the rows."""
    variance = tokens.var(dim=0, unbiased=False)
    keep = max(1, int(tokens.shape[-1] * ratio))
    return tokens[:, torch.topk(variance, keep, largest=False).indices]


def multi_scale_gaussian(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """``sum_a exp(-|x - c|^2 / (2a))`` over :data:`GAUSSIAN_SCALES`, reduced over the last axis."""
    dist = ((x - center) ** 2).sum(dim=-1)
    return sum((torch.exp(-dist / (2 * a)) for a in GAUSSIAN_SCALES), torch.zeros_like(dist))


def uniqueness_scores(video: torch.Tensor, channel_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s_v, s_f)``, each ``[T, P]`` float32: every token's Gaussian similarity to the video's and to
    its frame's mean, on the low-variance channels of the ``[T, P, D]`` video, normalised per token."""
    t, p, d = video.shape
    x = low_variance_channels(video.reshape(t * p, d).float(), channel_ratio).view(t, p, -1)
    x = F.normalize(x, dim=-1)
    video_center = x.mean(dim=(0, 1), keepdim=True)
    frame_center = x.mean(dim=1, keepdim=True)
    return multi_scale_gaussian(x, video_center), multi_scale_gaussian(x, frame_center)


def frame_scales(video_similarity: torch.Tensor, base: float, temperature: float) -> torch.Tensor:
    """The code's ``compute_scales``: ``min(1, R (1 + p_t - mean p))``, ``p = softmax(u / temperature)``
    over frames of the uniqueness ``u_t = -mean_p s_v`` (shifted by its maximum as the code does)."""
    u = -video_similarity.mean(dim=-1)
    probs = torch.softmax((u - u.max()) / temperature, dim=0)
    return (base * (1 + probs - probs.mean())).clamp(max=1.0)


def frame_token_counts(scales: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """The code's ``k_t = max(1, round(scale_t * P))`` (``torch.round``: halves to even)."""
    return torch.round(scales * tokens_per_frame).long().clamp(min=1)


def one_hot_scales(keep: float, num_frames: int) -> torch.Tensor:
    """``R (1 + p_t - mean p)`` at ``R = keep`` before the code's cap, when one frame takes the whole
    softmax (``p`` one-hot, the usual case at temperature 0.01)."""
    probs = torch.zeros(max(num_frames, 1), dtype=torch.float64)
    probs[0] = 1.0
    return keep * (1 + probs - probs.mean())


class VidCom2(Strategy):
    name = "vidcom2"
    summary = (
        "per-frame budgets by frame uniqueness, then each frame's most distinct tokens (arXiv 2505.14454)"
    )
    Config = VidCom2Config
    config: VidCom2Config
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "w/o frame compression adjustment (uniform budgets)": {"frame_budgets": "uniform"},
        "token uniqueness to the video only": {"token_score": "video"},
        "token uniqueness to the frame only": {"token_score": "frame"},
        "all channels": {"channel_ratio": 1.0},
        "original positions (keep)": {"position_policy": "keep"},
        "contiguous positions (reindex)": {"position_policy": "reindex"},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        # Before the LLM: every unit is the fraction of visual tokens entering it, R_RATIO's meaning.
        t, p = model.num_frames, model.tokens_per_frame
        if t and p:
            scales = one_hot_scales(keep, t)
            counts = frame_token_counts(scales.clamp(max=1.0), p)
            capped, floored = bool((scales > 1).any()), bool((scales * p < 0.5).any())
            if capped or floored:
                why = (
                    "the most unique frame's share is capped at the whole frame"
                    if capped
                    else "every frame keeps at least one token"
                )
                expected = float(counts.sum()) / (t * p)
                warn_budget(
                    cls.name, keep, keep, f"{why} (keeps {expected:.3f} when one frame is the most unique)"
                )
        return cls(config=cls.make_config(**options).model_copy(update={"base_scale": keep}))

    def policy(self, model: ModelInfo) -> PositionPolicy:
        """The position policy this config means on ``model`` (``"auto"`` resolved per family)."""
        policy = self.config.position_policy
        if policy == "auto":
            return "keep" if model.family in ORIGINAL_POSITION_FAMILIES else "reindex"
        return policy

    def token_scores_and_counts(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([T, P]`` scores, lowest kept; ``[T]`` tokens kept per frame``)`` for a ``[T, P, D]`` video."""
        cfg = self.config
        s_v, s_f = uniqueness_scores(video, cfg.channel_ratio)
        if cfg.frame_budgets == "adaptive":
            scales = frame_scales(s_v, cfg.base_scale, cfg.temperature)
        else:
            scales = torch.full((video.shape[0],), cfg.base_scale, device=video.device)
        score = {"video+frame": s_v + s_f, "video": s_v, "frame": s_f}[cfg.token_score]
        return score, frame_token_counts(scales, video.shape[1])

    def select(self, state: TokenState, ctx: StageContext) -> TokenState:
        if state.num_visual == 0:
            return state
        grid = frame_grid_index(state)  # [T, P] indices into the state, raster order per frame
        score, counts = self.token_scores_and_counts(state.hidden[grid])
        vis = state.visual_index
        per_visual = torch.empty(vis.numel(), dtype=score.dtype, device=state.device)
        per_visual[torch.searchsorted(vis, grid.flatten())] = score.flatten()
        return topk_per_frame(state, -per_visual, counts)

    def stages(self, model: ModelInfo) -> list[Stage]:
        return [Stage("vidcom2.frame_uniqueness", "input", self.select, position_policy=self.policy(model))]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(VidCom2)
