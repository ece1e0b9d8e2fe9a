"""PyramidDrop: "Accelerating Your Large Vision-Language Models via Pyramid Visual Redundancy Reduction"
(Xing et al., CVPR 2025, arXiv 2410.17247).

Followed: the authors' code, github.com/Cooperx521/PyramidDrop at commit 6444f30,
``pdrop_forward`` / ``pdrop_rank_drop`` in ``llava/model/modeling_llama_pdrop.py`` and the shipped
eval scripts (``--layer_list [8,16,24] --image_token_ratio_list [0.5,0.25,0.125]``):

1. The forward is split into stages at ``layer_list``. Before layer ``l_s`` (when ``l_s`` is the
   next layer to run), the hidden states are layer-normed and projected with layer ``l_s``'s own
   q/k (RoPE applied), and the **last instruction token** (``prompt_len + image_tokens - 1``, the
   last prompt token at inference) attends to all tokens; mean over heads.
2. The top ``int(N * ratio[s])`` visual tokens (``N`` = visual tokens at the LLM input, the ratios
   cumulative: ``lambda ** s``) are kept in their order, all other tokens too.
3. Positions are re-numbered contiguously (``arange``) after every drop.

In this framework that is a ``"pre"`` stage at each ``l_s`` whose ``ctx.last_token_attention`` is
computed from that layer's q/k on the state before its attention: the same numbers the official
code computes by hand. Defaults: layers 8/16/24 of 32 scaled to the model's depth
(``round(l * L / 32)``: 7/14/21 for Qwen2-7B's 28 layers), ``lambda = 0.5``.

Budgets (``for_budget``):

* ``"layer-average"`` (and ``"flops"``): ``keep = (l_1 + (l_2 - l_1) lambda + (l_3 - l_2) lambda^2
  + (L - l_3) lambda^3) / L`` solved for ``lambda`` by bisection, as the paper's token-average
  tables count it (each stage's layers at their stage's count; a ``pre`` stage prunes its whole
  layer). Below ``l_1 / L`` (25 % with the default boundaries) the target is unreachable: we warn
  and keep no visual token after ``l_1``. The repository ships no other ``layer_list``; pass
  earlier ``layers`` for lower budgets.
* ``"input"``: ``lambda = keep``, i.e. ``keep`` is the fraction kept after the first drop (the
  same convention as FastV and ``random`` for in-LLM drops).

Where we differ, and why:

* Decoding positions. The official code shifts each decode token's position, per stage, down by
  the tokens dropped at earlier stage boundaries (layers < l_1 see the original position). Our
  decode loop gives a token one position for all layers; with ``position_policy="reindex"``
  (default, exact for the prefill and for every layer >= l_3 while decoding) layers below l_3 see
  it shifted by the total number of dropped tokens. ``"keep"`` keeps original positions everywhere.
* The code is image-only (LLaVA-1.5/NeXT, "Support video llava" is a TODO); on video we rank all
  frames' tokens globally, and the LLaVA-OneVision newline token is not visual, so never dropped.
* The official attention adds a causal mask and softmaxes in float32 then casts to the model dtype
  before averaging; we average in float32.
* Engineering, not selection: the first stage reads one number back from the device (how many
  visual tokens it sees); the kept indices follow from that count without another read, and a later
  stage that finds as many tokens as the previous one left knows its visual count without reading
  it (a read mid-prefill costs the host's lead over the GPU for every layer after it, which the
  few-token late layers feel most). What a stage costs beyond that is the framework's: the layer's
  q/k for the attention row (``adapters/decoder.py``, ``_pre_rows``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig, warn_budget
from prune_bench.errors import UserError
from prune_bench.strategies.common.select import (
    last_token_visual_attention,
    topk_visual,
    visual_index_after,
)

REFERENCE_DEPTH = 32
REFERENCE_LAYERS = (8, 16, 24)
INPUT_COUNT_KEY = "pdrop.input_visual"
LEFT_KEY = "pdrop.left"


class PyramidDropConfig(StrategyConfig):
    ratio: float = Field(
        0.5, ge=0, le=1, description="lambda: each stage keeps this share of the previous stage's tokens"
    )
    layers: tuple[int, ...] | None = Field(
        None, description="stage boundaries (drop before these layers); None scales 8/16/24 of 32"
    )
    position_policy: PositionPolicy = Field(
        "reindex", description="'reindex' after each drop as the official code does, or 'keep' original ids"
    )


def scaled_layers(num_layers: int) -> tuple[int, ...]:
    layers = (max(1, min(num_layers - 1, round(x * num_layers / REFERENCE_DEPTH))) for x in REFERENCE_LAYERS)
    return tuple(sorted(set(layers)))


def pdrop_layer_average(ratio: float, layers: tuple[int, ...], num_layers: int) -> float:
    """Mean over layers of the visual share seen, when stage ``s`` keeps ``ratio ** s`` from layer ``l_s``."""
    bounds = (*layers, num_layers)
    total = float(layers[0])
    for s in range(len(layers)):
        total += (bounds[s + 1] - bounds[s]) * ratio ** (s + 1)
    return total / num_layers


def solve_ratio(keep: float, layers: tuple[int, ...], num_layers: int) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if pdrop_layer_average(mid, layers, num_layers) < keep:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class PyramidDrop(Strategy):
    name = "pdrop"
    summary = "multi-stage drop by last-instruction-token attention, lambda per stage (arXiv 2410.17247)"
    Config = PyramidDropConfig
    config: PyramidDropConfig

    def stage_layers(self, num_layers: int) -> tuple[int, ...]:
        layers = self.config.layers or scaled_layers(num_layers)
        if list(layers) != sorted(set(layers)) or layers[0] < 1 or layers[-1] >= num_layers:
            raise UserError(f"pdrop: layers {layers} must be increasing and inside 1..{num_layers - 1}")
        return layers

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        probe = cls.make_config(**options)
        if unit == "input":
            return cls(config=probe.model_copy(update={"ratio": keep}))
        layers = cls(config=probe).stage_layers(model.num_layers)
        floor = layers[0] / model.num_layers
        if keep < floor:
            warn_budget(cls.name, keep, floor, f"layers before {layers[0]} see every visual token")
            return cls(config=probe.model_copy(update={"ratio": 0.0}))
        return cls(config=probe.model_copy(update={"ratio": solve_ratio(keep, layers, model.num_layers)}))

    def make_stage(self, stage: int) -> Callable[[TokenState, StageContext], TokenState]:
        cumulative = self.config.ratio**stage

        def rank_drop(state: TokenState, ctx: StageContext) -> TokenState:
            memory = ctx.memory
            vis = visual_index_after(state, memory.get(LEFT_KEY))  # read back at the first stage only
            if INPUT_COUNT_KEY not in memory:
                memory[INPUT_COUNT_KEY] = vis.numel()
            if vis.numel() == 0:
                return state
            k = max(0, min(int(memory[INPUT_COUNT_KEY] * cumulative), vis.numel()))
            scores = last_token_visual_attention(state, ctx, visual_index=vis)
            out = topk_visual(state, scores, k, visual_index=vis)
            memory[LEFT_KEY] = (len(out), k)
            return out

        return rank_drop

    def stages(self, model: ModelInfo) -> list[Stage]:
        return [
            Stage(
                f"pdrop.stage{s}",
                "layer",
                self.make_stage(s),
                layer=layer,
                site="pre",
                position_policy=self.config.position_policy,
            )
            for s, layer in enumerate(self.stage_layers(model.num_layers), start=1)
        ]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(PyramidDrop)
