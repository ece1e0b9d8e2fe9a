"""Stages: one pruning step bound to a hook point, and the plan that orders them.

Hook points, in the order a sample meets them:

* ``input``   after the vision tower and projector (the LLM input embeddings of the video);
* ``segment`` after ``input``: stages that find or use the video's segment structure;
* ``frame``   after ``segment``: per-frame or per-window selection, still before the LLM;
* ``layer``   inside decoder layer ``l``: at site ``"pre"`` before its self-attention, or at site
  ``"post"`` after its self-attention and before its MLP. A token dropped at ``post`` is still in
  layer ``l``'s KV cache (its attention already ran) but skips layer ``l``'s MLP and every later
  layer, which for the kept tokens is exactly the same as dropping it before layer ``l + 1``;
* ``decode``  once per generated token: chooses which cached entries layers ``>= l`` may attend to.

A stage is a pure function of the state and a context; anything it needs from the model (the
layer's attention rows, the vision tower's attention) it asks the context for, lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from prune_bench.core.state import PositionPolicy, TokenState

if TYPE_CHECKING:
    import torch

    from prune_bench.core.context import DecodeContext, StageContext

HookPoint = Literal["input", "segment", "frame", "layer", "decode"]
LayerSite = Literal["pre", "post"]
HOOK_POINTS: tuple[HookPoint, ...] = ("input", "segment", "frame", "layer", "decode")
PRE_LLM: tuple[HookPoint, ...] = ("input", "segment", "frame")

StageFn = Callable[[TokenState, "StageContext"], TokenState]
DecodeFn = Callable[["DecodeContext"], "torch.Tensor | None"]


@dataclass(frozen=True)
class Stage:
    """One pruning step.

    :param name: shown in timings and reports, e.g. ``"fastv.attention_prune"``.
    :param hook: the hook point it runs at.
    :param fn: ``fn(state, ctx) -> state`` for prefill hooks; for ``decode``, ``fn(ctx)`` returning
        the ``source`` ids layers ``>= layer`` may attend to this step (``None``: all of them).
    :param layer: the decoder layer, for ``layer`` and ``decode`` stages.
    :param site: ``"pre"`` or ``"post"`` attention, for ``layer`` stages.
    :param position_policy: ``"keep"`` original position ids, or ``"reindex"`` contiguously after
        this stage (what pre-LLM methods that splice tokens before the LLM effectively do).
    :param touches_text: a stage that may remove text tokens must say so; the pipeline checks.
    :param needs: model internals the stage asks its context for (``"vision_attention"``), so the
        adapter captures them only when some stage needs them.
    """

    name: str
    hook: HookPoint
    fn: Callable[..., object]
    layer: int | None = None
    site: LayerSite = "post"
    position_policy: PositionPolicy = "keep"
    touches_text: bool = False
    needs: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.hook not in HOOK_POINTS:
            raise ValueError(f"unknown hook point {self.hook!r}; expected one of {HOOK_POINTS}")
        if self.hook in ("layer", "decode") and self.layer is None:
            raise ValueError(f"stage {self.name!r} at hook {self.hook!r} needs a layer index")


@dataclass(frozen=True)
class PruningPlan:
    """The stages of one run, grouped by where they run."""

    stages: tuple[Stage, ...] = ()

    @classmethod
    def of(cls, stages: Sequence[Stage], num_layers: int) -> PruningPlan:
        for s in stages:
            if s.layer is not None and not 0 <= s.layer < num_layers:
                raise ValueError(
                    f"stage {s.name!r} is mounted at layer {s.layer}, but the model has {num_layers} layers"
                )
        order = {h: i for i, h in enumerate(HOOK_POINTS)}
        site_order = {"pre": 0, "post": 1}
        ranked = sorted(
            enumerate(stages),
            key=lambda p: (order[p[1].hook], p[1].layer or 0, site_order[p[1].site], p[0]),
        )
        return cls(tuple(s for _, s in ranked))

    @property
    def pre_llm(self) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if s.hook in PRE_LLM)

    def at_layer(self, layer: int, site: LayerSite) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if s.hook == "layer" and s.layer == layer and s.site == site)

    @property
    def decode(self) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if s.hook == "decode")

    @property
    def needs(self) -> frozenset[str]:
        out: set[str] = set()
        for s in self.stages:
            out |= s.needs
        return frozenset(out)
