"""DivPrune: "Diversity-based Visual Token Pruning for Large Multimodal Models" (Alvar et al., CVPR 2025,
arXiv 2503.02175).

Followed: the authors' code, github.com/vbdi/divprune at commit 799e2d9, ``DivPrune`` and its call
in ``prepare_inputs_labels_for_multimodal`` (``LLaVA/llava/model/llava_arch.py``, ``LAYER_INDEX=0``):

1. on the projected visual embeddings spliced into the prompt, distances ``1 - cos`` between every
   pair of visual tokens;
2. first pick: the token whose nearest neighbour is farthest (second smallest entry of its column);
3. then, ``int(round(ratio * N)) - 1`` times, the token whose minimum distance to the picked set is
   largest (a greedy solution of the Max-Min Diversity Problem);
4. kept tokens are sorted back into order; ``position_ids`` is ``None`` in LLaVA, so positions are
   contiguous after the drop (``position_policy="reindex"``).

Text-agnostic and one global selection over every frame's tokens. Default ``ratio = 0.1``, the
video setting of the authors' ``tflops.py`` (``SUBSET_RATIO=0.098`` in the image scripts).

Budgets: DivPrune prunes before the LLM, so ``"input"``, ``"layer-average"`` and ``"flops"`` all
set ``ratio = keep``.

Where we differ, and why:

* The greedy loop keeps a running minimum (one distance row per pick) instead of re-reducing the
  rows of all picked tokens each step: same picks, ``O(k N)`` instead of ``O(k^2 N)``.
* A picked token is never picked again (the official code relies on its self-distance being the
  column minimum, which float error can break for duplicate tokens): the diagonal of the distance
  matrix is set to ``-inf`` once, after the first pick's nearest-neighbour distances are read.
* Engineering, not selection: distances in float32 (the official code uses the model dtype), one
  ``N x N`` buffer. On CUDA the cosine products are the Triton Gram kernel's (three TF32 products a
  tile, float32-level error; ``torch.matmul`` in float32 on the CPU and as the fallback), and the
  ``k - 1`` picks, still sequential, run in one Triton program that keeps every token's running
  minimum in registers (``prune_bench/kernels/maxmin_triton.py``: per pick an argmax and one row read,
  no kernel launch); where Triton or the token count (over 16,384) rules it out, each pick is five
  small PyTorch kernels replayed as CUDA graphs of 32 picks (``prune_bench/kernels/graph_steps.py``).
  ``kernels/selector.py`` chooses (``PRUNE_BENCH_MAXMIN`` forces a path); every path takes the first
  maximum, so from one distance matrix all pick the same tokens. The Gram kernel and float32
  ``torch.matmul`` differ by a few 1e-6, which can change a pick whose two best candidates are that
  close (and the picks after it), as any two float32 summation orders can.
* The visual span comes from the token layout, not ``SYS_TOKEN_LEN = 35``; the newline token of
  LLaVA-OneVision is not visual and always kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig
from prune_bench.strategies.common.diversity import greedy_max_min_diversity
from prune_bench.strategies.common.select import keep_visual_subset


class DivPruneConfig(StrategyConfig):
    ratio: float = Field(
        0.1, gt=0, le=1, description="share of visual tokens kept (SUBSET_RATIO; video: 0.1)"
    )
    position_policy: PositionPolicy = Field(
        "reindex", description="'reindex' as LLaVA's splice does (position_ids=None), or 'keep'"
    )


class DivPrune(Strategy):
    name = "divprune"
    summary = "greedy max-min cosine diversity over all visual tokens at the LLM input (arXiv 2503.02175)"
    Config = DivPruneConfig
    config: DivPruneConfig
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "original positions (no reindex)": {"position_policy": "keep"},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        return cls(config=cls.make_config(**options).model_copy(update={"ratio": keep}))

    def select(self, state: TokenState, ctx: StageContext) -> TokenState:
        vis = state.visual_index
        k = int(round(self.config.ratio * vis.numel()))
        return keep_visual_subset(state, greedy_max_min_diversity(state.hidden[vis], k))

    def stages(self, model: ModelInfo) -> list[Stage]:
        policy = self.config.position_policy
        return [Stage("divprune.max_min_diversity", "input", self.select, position_policy=policy)]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(DivPrune)
