"""Strategies: a named, documented, configurable set of stages.

A strategy author writes a pydantic config (every field with a description and the paper's
default; unknown fields are rejected), a ``stages()`` method that returns the stages bound to the
model at hand, and a ``for_budget()`` that maps a target retention onto the strategy's own knobs the
way its authors did.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from prune_bench.core.ledger import BUDGET_UNITS, BudgetUnit, BudgetWarning, warn_budget
from prune_bench.core.stages import Stage
from prune_bench.errors import UserError

__all__ = [
    "BUDGET_UNITS",
    "BudgetUnit",
    "BudgetWarning",
    "CAPABILITIES",
    "ModelInfo",
    "Strategy",
    "StrategyConfig",
    "variant_spec",
    "warn_budget",
]


class StrategyConfig(BaseModel):
    """Base of every strategy config: frozen, and unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: Model internals an adapter can hand to stages (a stage lists what it asks for in ``Stage.needs``).
CAPABILITIES: frozenset[str] = frozenset({"vision_attention"})


@dataclass(frozen=True)
class ModelInfo:
    """What a strategy may know about the model and the sample layout when building its stages.

    :param family: the adapter's model family (its registered name: ``"llava_onevision"``,
        ``"qwen2_vl"``, ...), which strategies with per-family settings read; always set by the adapter.
    :param capabilities: the model internals the adapter can provide to stages (a subset of
        :data:`CAPABILITIES`); a plan whose stages need more fails when it is built.
    """

    num_layers: int
    num_frames: int
    tokens_per_frame: int
    hidden_size: int
    family: str
    capabilities: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = self.capabilities - CAPABILITIES
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")


class Strategy(ABC):
    """Base class of pruning strategies. Subclasses set ``name``, ``summary`` and ``Config``, and may
    declare ``ablations``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig
    #: The switches worth ablating, as the paper's ablation table names them: label -> config options
    #: that differ from the defaults, e.g. ``{"w/o segment level": {"segment_level": False}}``.
    #: ``prune-bench ablate NAME`` runs every one beside the default at the same budgets.
    ablations: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Whether a stage draws from ``ctx.generator``: only then is ``--seed`` part of the configuration's
    #: identity (the unpruned reference is one row whatever the seed).
    uses_randomness: ClassVar[bool] = False

    def __init__(self, config: StrategyConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise TypeError("pass either a config or options, not both")
        self.config = config if config is not None else self.make_config(**options)

    @classmethod
    def make_config(cls, **options: Any) -> StrategyConfig:
        """Validate ``options`` into this strategy's config; a mistake is one readable line."""
        try:
            return cls.Config(**options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
            )
            fields = ", ".join(cls.Config.model_fields) or "(none)"
            raise UserError(
                f"invalid options for strategy '{cls.name}': {problems} (valid options: {fields})"
            ) from None

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        """This strategy configured to retain ``keep`` of the visual tokens, measured in ``unit``.

        The default ignores the budget (strategies without a budget knob, like ``none``).
        """
        return cls(**options)

    @abstractmethod
    def stages(self, model: ModelInfo) -> list[Stage]:
        """The stages to mount on ``model``."""

    @classmethod
    def ablation_specs(cls) -> dict[str, str]:
        """``ablations`` as strategy specs the CLI reads: label -> ``name[option=value,...]``."""
        return {label: variant_spec(cls.name, options) for label, options in cls.ablations.items()}

    @property
    def label(self) -> str:
        return self.name

    @property
    def random(self) -> bool:
        """Whether this configured strategy (any of its parts) draws random numbers."""
        return self.uses_randomness

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, **self.config.model_dump()}


def variant_spec(name: str, options: dict[str, Any]) -> str:
    """``("hieravid", {"segment_level": False})`` -> ``"hieravid[segment_level=false]"``, the form
    ``compare`` reads and results record (so an ablation run and a hand-typed variant share a row)."""
    if not options:
        return name
    return f"{name}[{','.join(f'{k}={_spec_value(v)}' for k, v in options.items())}]"


def _spec_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value, separators=(",", ":"))
