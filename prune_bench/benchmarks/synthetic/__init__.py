"""The built-in synthetic video QA benchmark (six tasks, generated from a seed)."""

from prune_bench.benchmarks.synthetic.dataset import SyntheticVideoQA
from prune_bench.benchmarks.synthetic.tasks import TaskBatch, generate
from prune_bench.benchmarks.synthetic.vocab import TASKS

__all__ = ["TASKS", "SyntheticVideoQA", "TaskBatch", "generate"]
