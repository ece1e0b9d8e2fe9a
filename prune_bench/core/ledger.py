"""The budget ledger: what a run kept, measured, predicted and inverted, in every budget unit.

One place for the arithmetic every strategy and every record shares:

* **counting** -- :class:`LayerCount`, the tokens one decoder layer processed (attention and MLP,
  all and visual), the one per-layer count type of the project (the decoder loop writes it, the FLOPs
  model and the records read it);
* **measuring** -- :func:`measure` turns a run's counts into :class:`Retention` (visual tokens entering
  the LLM, layer-averaged, visible while decoding) and :func:`flops_record` into prefill FLOPs under both
  conventions of :mod:`prune_bench.core.flops`, pruned and unpruned;
* **predicting and inverting** -- a schedule of drops (``full`` layers at the full count, then a
  fraction) predicts the layer average (:func:`predict_layer_average`); :func:`kept_for_layer_average`
  inverts one drop, :func:`full_layers` says how many layers a stage at (layer, site) leaves untouched
  (a stage after a layer's attention counts that layer as half: attention at the old count, MLP at the
  new one).

The budget units a user can name (``--budget-unit``) and the warning for a budget a strategy cannot
reach live here too; :mod:`prune_bench.core.strategy` re-exports them for strategy authors.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prune_bench.core.flops import LMShape, prefill_flops

BudgetUnit = Literal["input", "layer-average", "flops"]
BUDGET_UNITS: tuple[BudgetUnit, ...] = ("input", "layer-average", "flops")


class BudgetWarning(UserWarning):
    """A strategy cannot reach the requested budget and runs at the closest one it can."""


@dataclass(frozen=True)
class LayerCount:
    """Tokens one decoder layer processed: in its attention (queries = keys in prefill) and in its MLP,
    all of them and the visual ones. A stage at site ``"post"`` drops tokens between the two, so the MLP
    counts may be smaller."""

    attn_tokens: int
    attn_visual: int
    mlp_tokens: int
    mlp_visual: int

    def __post_init__(self) -> None:
        if min(self.attn_tokens, self.attn_visual, self.mlp_tokens, self.mlp_visual) < 0:
            raise ValueError(f"token counts must be non-negative, got {self}")

    @property
    def visual(self) -> float:
        """The layer's visual count, attention and MLP each half a layer."""
        return (self.attn_visual + self.mlp_visual) / 2

    @classmethod
    def full(cls, tokens: int, visual: int) -> LayerCount:
        """A layer that processed every token."""
        return cls(tokens, visual, tokens, visual)


@dataclass(frozen=True)
class Retention:
    """The three retention figures every record carries, as fractions of the unpruned visual count."""

    input: float
    layer_average: float
    decode: float

    def as_dict(self) -> dict[str, float]:
        return {"input": self.input, "layer_average": self.layer_average, "decode": self.decode}


def layer_average(counts: Sequence[LayerCount], total_visual: int) -> float:
    """Mean over layers of the visual tokens a layer processed, as a fraction of ``total_visual``."""
    if not counts or not total_visual:
        return 1.0
    return sum(c.visual for c in counts) / (len(counts) * total_visual)


def measure(
    counts: Sequence[LayerCount], input_visual: int, total_visual: int, decode_visible: int
) -> Retention:
    """A run's :class:`Retention` from its per-layer counts and the visual tokens at the LLM input and
    visible to the last layer while decoding."""
    if not total_visual:
        return Retention(1.0, 1.0, 1.0)
    return Retention(
        input=input_visual / total_visual,
        layer_average=layer_average(counts, total_visual),
        decode=decode_visible / total_visual,
    )


def unpruned_counts(counts: Sequence[LayerCount], total_visual: int) -> list[LayerCount]:
    """The counts of the same prompt unpruned: stages leave text alone, so the first layer's non-visual
    tokens plus every visual one, in every layer."""
    if not counts:
        return []
    n = counts[0].attn_tokens - counts[0].attn_visual + total_visual
    return [LayerCount.full(n, total_visual)] * len(counts)


def flops_record(shape: LMShape, counts: Sequence[LayerCount], total_visual: int) -> dict[str, float]:
    """Prefill FLOPs of the run and of the unpruned prompt, under both conventions."""
    full = unpruned_counts(counts, total_visual)
    return {
        "exact": prefill_flops(shape, counts, "exact"),
        "paper": prefill_flops(shape, counts, "paper"),
        "exact_full": prefill_flops(shape, full, "exact"),
        "paper_full": prefill_flops(shape, full, "paper"),
    }


# ---------------------------------------------------------------------------- predicting, inverting
def full_layers(layer: int, site: Literal["pre", "post"]) -> float:
    """Layers that see every token when a stage at decoder ``layer`` (site ``pre`` or ``post`` its
    attention) is the first to prune: ``layer``, plus the attention half of it for ``post``."""
    return layer + (0.5 if site == "post" else 0.0)


def predict_layer_average(num_layers: int, schedule: Sequence[tuple[float, float]]) -> float:
    """The layer average of a schedule of drops: ``(full, fraction)`` pairs, each meaning "from ``full``
    layers on, ``fraction`` of the visual tokens remain" (fractions of the unpruned count, ``full``
    increasing). Before the first pair every token is there."""
    total, at, fraction = 0.0, 0.0, 1.0
    for full, after in schedule:
        total += fraction * (full - at)
        at, fraction = full, after
    return (total + fraction * (num_layers - at)) / num_layers


def kept_for_layer_average(
    keep: float, num_layers: int, full: float, *, before: float = 1.0, total: float = 1.0
) -> float:
    """What one drop after ``full`` layers must leave so that the layer average is ``keep``.

    ``before`` tokens (in any unit, ``total`` of them unpruned) run the first ``full`` layers, the
    returned amount the rest: ``keep * L * total = before * full + kept * (L - full)``. With the defaults
    it is the fraction kept of an unpruned input. Negative means the budget is below what the untouched
    layers alone cost.
    """
    return (keep * num_layers * total - before * full) / (num_layers - full)


def warn_budget(strategy: str, requested: float, achievable: float, why: str) -> None:
    """``strategy`` runs at ``achievable`` instead of ``requested``; with the two equal it aims at the
    budget but the video decides what it keeps (the run records the achieved retention)."""
    if abs(achievable - requested) < 1e-12:
        text = f"{strategy} aims at keep={requested:.3f} but may miss it: {why}; the achieved retention is recorded"
    else:
        text = f"{strategy} cannot reach keep={requested:.3f}: {why}; running at keep={achievable:.3f}"
    warnings.warn(text, BudgetWarning, stacklevel=3)
