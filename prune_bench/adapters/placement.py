"""Models larger than one GPU: where each part of a model lives, and what the decoder loop carries across.

``--device-map auto`` (or a JSON file naming a device per module) is handed to transformers'
``from_pretrained(..., device_map=...)``, which places the modules with accelerate's big-model
placement and attaches accelerate's hooks to the modules it names. Those hooks move the inputs of a
module's own ``forward``; the decoder loop (adapters/decoder.py) calls a layer's norms, projections and
MLP directly, so it moves what it carries itself: :class:`Placement` says, once per prefill or decode
step, which device the embedding, each decoder layer, the final norm and the LM head sit on, and the
loop moves its hidden states, token state, RoPE tables, masks and decode-stage choices only where two
consecutive parts differ (on one device it moves nothing and compares devices once per layer).

Random-weight architectures (``speed --arch``) are built with their parameters on the meta device
(buffers, such as RoPE's ``inv_freq``, computed as usual), each parameter is then created on the
device the map gives its module and filled from a seeded generator on that device, and accelerate's
``dispatch_model`` attaches the same hooks ``from_pretrained`` would. Building per parameter on its
device means a 72B model never exists in host memory, which no machine we run on could hold twice.
Offloading (a module on ``cpu`` or ``disk`` next to GPU modules) is refused: the loop runs each layer
where its weights are, and offloaded weights live on the meta device until a hook fetches them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prune_bench.core.context import VisionAttention
from prune_bench.core.state import TokenState
from prune_bench.errors import UserError

#: what ``--device-map`` takes besides a JSON file (accelerate's strategies)
AUTO_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
DeviceMap = str | dict[str, int | str]
INSTALL = "pip install accelerate (or pip install 'prune-bench[multi-gpu]')"


def require_accelerate() -> None:
    """One line naming the install when accelerate is missing."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise UserError(f"--device-map needs accelerate: {INSTALL}") from None


def parse_device_map(value: str | None) -> DeviceMap | None:
    """``--device-map``: None, one of :data:`AUTO_MAPS`, or a JSON file of ``{module name: device}``
    (a GPU index, ``"cuda:N"`` or ``"cpu"``); checks that accelerate is installed."""
    if value is None:
        return None
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # torchrun / accelerate launch: data-parallel ranks
        raise UserError(
            "--device-map spreads one model over every GPU, so it cannot run under torchrun's data-parallel "
            "ranks (each would claim all GPUs); run one process with --device-map, or torchrun without it"
        )
    require_accelerate()
    if value in AUTO_MAPS:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(
            f"--device-map takes {', '.join(AUTO_MAPS)} or a JSON file of module -> device; '{value}' is neither"
        )
    try:
        mapping = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"--device-map {value}: not readable JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(mapping, dict) or not mapping:
        raise UserError(f'--device-map {value}: expected a JSON object like {{"lm_head": 1, ...}}')
    for name, device in mapping.items():
        if isinstance(device, bool) or not isinstance(device, (int, str)) or device == "disk":
            raise UserError(
                f"--device-map {value}: module '{name}' maps to {device!r}; use a GPU index, 'cuda:N' or 'cpu' "
                "(offloading to disk is not supported)"
            )
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise UserError(f"--device-map {value}: module '{name}' maps to unknown device {device!r}") from None
    return mapping


def _device_of(entry: int | str) -> torch.device:
    return torch.device("cuda", entry) if isinstance(entry, int) else torch.device(entry)


def check_placement(model: nn.Module) -> None:
    """After a device-mapped load: refuse what the decoder loop cannot run (offloaded modules)."""
    mapping = getattr(model, "hf_device_map", None) or {}
    kinds = {_device_of(d).type if d != "disk" else "disk" for d in mapping.values()}
    offloaded = kinds & {"cpu", "disk"}
    meta = next((n for n, p in model.named_parameters() if p.device.type == "meta"), None)
    if (offloaded and len(kinds) > 1) or meta is not None:
        where = ", ".join(sorted(offloaded)) or "meta"
        raise UserError(
            f"the device map offloads modules to {where}, which prune-bench's layer loop does not run; "
            "use enough GPUs for the whole model (or a smaller --dtype), or a device map without cpu/disk"
        )


def place(model: Any, device: str, device_map: DeviceMap | None) -> Any:
    """An adapter's loaded model on ``device``, or as the device map placed it (checked)."""
    if device_map is None:
        return model.to(device)
    check_placement(model)
    return model


def module_device(module: nn.Module) -> torch.device:
    """Where a module's weights are (its first parameter's device; a buffer's; else the CPU)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@dataclass(frozen=True)
class Placement:
    """The device of each part of the language model the decoder loop runs."""

    embed: torch.device
    layers: tuple[torch.device, ...]
    norm: torch.device
    head: torch.device

    @property
    def single(self) -> bool:
        """Everything on one device: the loop moves nothing."""
        return all(d == self.embed for d in (*self.layers, self.norm, self.head))

    def boundaries(self) -> list[int]:
        """Layers whose device differs from the part before them (the embedding for layer 0)."""
        before = (self.embed, *self.layers[:-1])
        return [i for i, (a, b) in enumerate(zip(before, self.layers, strict=True)) if a != b]


def move_state(state: TokenState, device: torch.device) -> TokenState:
    """Every tensor of ``state`` on ``device`` (its hidden states and its layout)."""
    moved = {
        f.name: getattr(state, f.name).to(device, non_blocking=True)
        for f in fields(state)
        if isinstance(getattr(state, f.name), torch.Tensor)
    }
    return replace(state, **moved)


def video_on(video: Any, device: torch.device) -> Any:
    """An adapter's :class:`~prune_bench.adapters.layout.VideoTokens` (or subclass) with its tokens and
    patch grid on ``device`` (the embedding's) when the vision tower sits elsewhere; itself otherwise."""
    if video.embeds.device == device:
        return video
    thw = None if video.thw is None else video.thw.to(device)
    return replace(video, embeds=video.embeds.to(device), thw=thw)


def vision_on(
    vision: Callable[[], VisionAttention] | None, device: torch.device
) -> Callable[[], VisionAttention] | None:
    """The lazy vision attention, delivered on ``device`` (the embedding's, where pre-LLM stages run)
    when the tower sits elsewhere."""
    if vision is None:
        return None

    def on_device() -> VisionAttention:
        found = vision()
        if found.received.device == device:
            return found
        return replace(found, received=found.received.to(device), keys=found.keys.to(device))

    return on_device


class Generators:
    """A stage's generator on the device it runs on: ``base`` on its own device, and for every other
    device one generator seeded with ``base``'s seed (each device draws from its own stream, as a run
    on that device alone would)."""

    def __init__(self, base: torch.Generator) -> None:
        self.base = base
        self._by_device: dict[torch.device, torch.Generator] = {_normal(base.device): base}

    def on(self, device: torch.device) -> torch.Generator:
        key = _normal(device)
        if key not in self._by_device:
            self._by_device[key] = torch.Generator(device=key).manual_seed(self.base.initial_seed())
        return self._by_device[key]


def _normal(device: torch.device) -> torch.device:
    """``cuda`` and ``cuda:0`` (the current device) as one key."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if device.type == "cpu":
        return torch.device("cpu")
    return device


# ------------------------------------------------------------------------- random-weight models
def _entry_for(name: str, mapping: Mapping[str, int | str]) -> int | str:
    """The device-map entry covering parameter ``name`` (the longest module prefix)."""
    best: str | None = None
    for prefix in mapping:
        if (prefix == "" or name == prefix or name.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    if best is None:
        raise UserError(f"the device map places no module holding '{name}'; add its module (or a parent)")
    return mapping[best]


def infer_device_map(model: nn.Module, dtype: torch.dtype) -> dict[str, int | str]:
    """accelerate's balanced placement over the visible GPUs, whole decoder layers and vision blocks
    kept together (the model's ``_no_split_modules``)."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    no_split = list(getattr(model, "_no_split_modules", None) or [])
    memory = get_balanced_memory(model, no_split_module_classes=no_split, dtype=dtype)
    return dict(infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split, dtype=dtype))


def random_model_on_device_map(
    model_cls: Any, config: Any, device_map: DeviceMap, dtype: torch.dtype, seed: int, attn: str
) -> Any:
    """``model_cls`` at ``config``'s shape with random weights, each parameter created on the device the
    map gives its module (``auto``: accelerate's balanced placement), then dispatched with accelerate's
    hooks. Weights are drawn as HF's default initialisation draws them (normal with the config's
    ``initializer_range`` for matrices, ones for norm scales, zeros for biases), from one generator per
    device seeded with ``seed``; the values differ from :func:`random_hf_model`'s, the shapes do not."""
    require_accelerate()
    from accelerate import dispatch_model, init_empty_weights
    from accelerate.utils import set_module_tensor_to_device

    config._attn_implementation = attn
    with init_empty_weights(include_buffers=False):
        model = model_cls._from_config(config, dtype=dtype)
    mapping = infer_device_map(model, dtype) if isinstance(device_map, str) else dict(device_map)
    devices = {_device_of(d) for d in mapping.values() if d != "disk"}
    if "disk" in mapping.values() or (torch.device("cpu") in devices and len(devices) > 1):
        raise UserError(
            "the model does not fit on the visible GPUs (the device map offloads modules to cpu/disk, which "
            "prune-bench's layer loop does not run); use more GPUs or --dtype bfloat16"
        )
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    std = float(getattr(text, "initializer_range", None) or getattr(config, "initializer_range", 0.02))
    generators: dict[torch.device, torch.Generator] = {}
    for name, param in list(model.named_parameters()):
        device = _device_of(_entry_for(name, mapping))
        gen = generators.get(device)
        if gen is None:
            gen = generators[device] = torch.Generator(device=device).manual_seed(seed)
        value = torch.empty(param.shape, dtype=param.dtype, device=device)
        if name.endswith("bias"):
            value.zero_()
        elif param.dim() == 1:
            value.fill_(1.0)
        else:
            value.normal_(0.0, std, generator=gen)
        set_module_tensor_to_device(model, name, device, value=value)
    for name, _ in list(model.named_buffers()):
        set_module_tensor_to_device(model, name, _device_of(_entry_for(name, mapping)))
    if getattr(text, "tie_word_embeddings", False) and hasattr(model, "tie_weights"):
        model.tie_weights()
    if len(devices) > 1:
        dispatch_model(model, device_map=mapping)
    else:
        model.hf_device_map = mapping
    return model
