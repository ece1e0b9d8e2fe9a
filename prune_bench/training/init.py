"""``--init``: continue from the weights of an earlier run's model directory."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def load_init(path: str, config: Any, vocab: Mapping[str, int]) -> tuple[Any, dict[str, Any]]:
    """A model of ``config`` holding an earlier run's weights, and that run's summary (``{}`` if none).

    The architecture must be the same; the vocabulary may have grown (a word added to the benchmark or
    to a training question): the embedding and output rows of every word the earlier tokenizer knew
    are carried over by word, new words keep their fresh initialisation."""
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    from prune_bench.errors import UserError

    where = Path(path)
    if not (where / "config.json").is_file() or not (where / "model.safetensors").is_file():
        raise UserError(f"--init {path}: not a model directory (config.json and model.safetensors expected)")
    old = LlavaOnevisionForConditionalGeneration.from_pretrained(str(where), dtype=torch.float32)
    old_vocab = AutoTokenizer.from_pretrained(str(where)).get_vocab()
    model = LlavaOnevisionForConditionalGeneration(config)
    theirs = old.state_dict()
    shared = [w for w in vocab if w in old_vocab]
    new_rows = torch.tensor([vocab[w] for w in shared])
    old_rows = torch.tensor([old_vocab[w] for w in shared])
    with torch.no_grad():
        for name, param in model.state_dict().items():
            if name not in theirs:
                raise UserError(f"--init {path}: its model has no '{name}'; it is another architecture")
            if name.endswith(("embed_tokens.weight", "lm_head.weight")):
                param[new_rows] = theirs[name][old_rows].to(param.dtype)
            elif theirs[name].shape != param.shape:
                raise UserError(
                    f"--init {path}: '{name}' is {tuple(theirs[name].shape)} there and "
                    f"{tuple(param.shape)} here; train with the same shape settings"
                )
            else:
                param.copy_(theirs[name])
    summary_file = where / "training_summary.json"
    earlier = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    earlier["new_words"] = sorted(set(vocab) - set(old_vocab))
    return model, earlier
