"""Choosing the model a command runs: the user's checkpoint, or the shipped default."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import torch

from prune_bench.adapters.base import Adapter, resolve_model_path
from prune_bench.core.plugins import registry
from prune_bench.errors import UserError

DEFAULT_MODEL_DIR = Path(str(files("prune_bench") / "assets" / "default_model"))


def pick_device(device: str | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
    return device


def load_adapter(model: str | None, device: str) -> tuple[Adapter, str]:
    """(adapter, description). ``None`` loads the shipped default model."""
    from transformers import AutoConfig

    path = str(DEFAULT_MODEL_DIR) if model is None else resolve_model_path(model)
    if model is None and not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise UserError(
            "the shipped default model is missing from this install; reinstall prune-bench or pass --model"
        )
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"could not read the config of '{path}': {str(exc).splitlines()[0]}") from None
    for adapter_cls in registry().adapters.values():
        if adapter_cls.handles(config):
            adapter = adapter_cls.from_pretrained(path, device=device)  # type: ignore[attr-defined]
            label = (
                "shipped default model (prune-bench's small trained LLaVA-OneVision)"
                if model is None
                else path
            )
            return adapter, label
    names = ", ".join(sorted(registry().adapters))
    raise UserError(f"no adapter handles {type(config).__name__} (adapters: {names})")
