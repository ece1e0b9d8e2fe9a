"""What defines a training run: :class:`TrainSettings` (recorded in the model card) and the prompt
template the model is trained and evaluated with."""

from __future__ import annotations

from dataclasses import dataclass, field

from prune_bench.training.shape import ModelShape
from prune_bench.training.weights import DEFAULT_WEIGHTS

PROMPT_TEMPLATE = "Video: {video}\nQuestion: {question}\nOptions: {options}\nAnswer:"


@dataclass
class TrainSettings:
    """Everything that defines a training run (recorded in the model card)."""

    steps: int = 20000
    minutes: float | None = 8.0
    batch_size: int = 96
    lr: float = 8e-4
    min_lr_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    num_frames: int = 32
    eval_items: int = 300
    eval_seed: int = 0
    eval_random_keep: float | None = 0.1
    task_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    shape: ModelShape = field(default_factory=ModelShape)
    #: continue from the weights of an earlier run's model directory instead of a fresh initialisation
    init: str | None = None
