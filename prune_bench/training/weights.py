"""The task mix of a training batch: the default weights and ``--weights`` parsing."""

from __future__ import annotations

from prune_bench.benchmarks.synthetic.vocab import TASKS

#: task mix of a training batch; ``shape`` is the training-only single-scene ``detail`` curriculum
DEFAULT_WEIGHTS: dict[str, float] = {
    "needle": 0.5,
    "order": 0.5,
    "count": 1.1,
    "motion": 1.3,
    "detail": 1.4,
    "shape": 0.4,
    "change": 0.4,
}


def parse_weights(text: str) -> dict[str, float]:
    """``"needle=0.5,count=1.4"`` -> task weights (the named tasks only; each must be known)."""
    from prune_bench.errors import UserError
    from prune_bench.training.data import TRAINING_TASKS

    known = (*TASKS, *TRAINING_TASKS)
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in known:
            raise UserError(f"--weights expects TASK=WEIGHT pairs over {', '.join(known)}; got '{part}'")
        try:
            out[name] = float(value)
        except ValueError:
            raise UserError(f"--weights: '{value}' is not a number (in '{part}')") from None
    return out
