"""Training the small default model that ships with prune-bench.

Recipe: a SigLIP-style tower (hidden 128, 3 layers, patch 8 on 64x64 frames: 8x8 patches, pooled by
LLaVA-OneVision's 2x2 video pooling to 16 tokens a frame) and a Qwen2-style LM (hidden 256, 8
layers, 4 heads, 2 KV heads), trained from scratch on synthetic videos generated on the device, or
continued from an earlier run's weights, so a recipe can run in stages that each fit one GPU session.
The held-out numbers of the model card are measured through the adapter and the evaluation loop, so
they are what ``prune-bench compare`` reports.

Modules: ``shape`` (ModelShape, the LlavaOnevisionConfig), ``weights`` (the task mix, ``--weights``),
``settings`` (TrainSettings, the prompt template), ``data`` and ``tokenizer`` (batches, vocabulary),
``forward`` (the training forward pass), ``init`` (``--init``), ``loop`` (the optimisation loop),
``evaluation`` (held-out accuracy of a saved directory), ``card`` (MODEL_CARD.md, retrain commands).
"""

from prune_bench.training.card import (
    SHIPPED_OUT,
    is_shipped_model_dir,
    model_card,
    retrain_command,
    retrain_commands,
)
from prune_bench.training.evaluation import evaluate_model_dir
from prune_bench.training.forward import answer_logits, pool_video
from prune_bench.training.init import load_init
from prune_bench.training.loop import PROFILE_STEPS, lr_factor, train_default_model
from prune_bench.training.settings import PROMPT_TEMPLATE, TrainSettings
from prune_bench.training.shape import ModelShape, build_config, video_token_count
from prune_bench.training.weights import DEFAULT_WEIGHTS, parse_weights

__all__ = [
    "DEFAULT_WEIGHTS",
    "PROFILE_STEPS",
    "PROMPT_TEMPLATE",
    "SHIPPED_OUT",
    "ModelShape",
    "TrainSettings",
    "answer_logits",
    "build_config",
    "evaluate_model_dir",
    "is_shipped_model_dir",
    "load_init",
    "lr_factor",
    "model_card",
    "parse_weights",
    "pool_video",
    "retrain_command",
    "retrain_commands",
    "train_default_model",
    "video_token_count",
]
