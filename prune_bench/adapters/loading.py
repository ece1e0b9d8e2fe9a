"""Choosing the model a command runs: the user's checkpoint, or the shipped default."""

from __future__ import annotations

import hashlib
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
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu, cuda or cuda:N, got '{device}'")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= max(torch.cuda.device_count(), 1):
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
    return device


def load_adapter(model: str | None, device: str, device_map: str | None = None) -> tuple[Adapter, str]:
    """(adapter, description). ``None`` loads the shipped default model. ``device_map`` (``--device-map``:
    ``auto`` or a JSON file, adapters/placement.py) places the model's modules across devices instead of
    ``device``."""
    from prune_bench.adapters.placement import parse_device_map

    placement = parse_device_map(device_map)  # a bad value, or no accelerate: one line before loading
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
            placed = {} if placement is None else {"device_map": placement}
            adapter = adapter_cls.from_pretrained(path, device=device, **placed)  # type: ignore[attr-defined]
            label = (
                "shipped default model (prune-bench's small trained LLaVA-OneVision)"
                if model is None
                else path
            )
            return adapter, label
    names = ", ".join(sorted(registry().adapters))
    raise UserError(f"no adapter handles {type(config).__name__} (adapters: {names})")


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def model_identity(model: str | None) -> dict[str, str]:
    """What makes a checkpoint itself, for the results store: where it was loaded from, a hash of its
    config, and a hash of its weight files' names and sizes (cheap, and different for any retrained or
    re-exported checkpoint; a hub id without a local copy is identified by the id itself).
    ``digest`` condenses the three."""
    path = DEFAULT_MODEL_DIR if model is None else Path(resolve_model_path(model)).expanduser()
    where = "shipped default model" if model is None else str(path.resolve() if path.exists() else model)
    config, weights = f"hub:{model}", "-"
    if path.is_dir():
        config_file = path / "config.json"
        if config_file.is_file():
            config = hashlib.sha256(config_file.read_bytes()).hexdigest()[:16]
        files_ = sorted(f for f in path.iterdir() if f.suffix in WEIGHT_SUFFIXES and f.is_file())
        weights = hashlib.sha256(
            "\n".join(f"{f.name}:{f.stat().st_size}" for f in files_).encode()
        ).hexdigest()[:16]
    digest = hashlib.sha256(f"{config}:{weights}".encode()).hexdigest()[:12]
    return {"path": where, "config_sha256": config, "weights_sha256": weights, "digest": digest}
