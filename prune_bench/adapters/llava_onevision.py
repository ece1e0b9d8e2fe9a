"""Adapter for Hugging Face ``LlavaOnevisionForConditionalGeneration`` (LLaVA-OneVision, LLaVA-Video).

Video layout (LLaVA-OneVision "one_token" newline mode, as the HF model builds it): every frame goes
through the SigLIP tower, the projector, and a bilinear 2x2 pooling to ``ceil(g/2) x ceil(g/2)``
tokens (``g = image_size // patch_size``); all frames' tokens follow each other row-major and ONE
``image_newline`` token closes the video. Everything here is read from the config and the input
ids: nothing assumes 196 tokens a frame, 32 frames or a system prompt of 14 tokens.

We call the tower, the projector and ``apply_pooling`` ourselves rather than
``get_video_features``, whose argument name and output differ between transformers 5.17 and 5.2x.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from prune_bench.adapters.base import (
    Adapter,
    PromptFormat,
    decoder_runner,
    default_dtype,
    load_hf_checkpoint,
    random_hf_model,
    resolve_model_path,
    rope_1d,
)
from prune_bench.adapters.configs import (
    llava_onevision_7b_config,
    llava_onevision_72b_config,
    tiny_llava_onevision_config,
)
from prune_bench.adapters.layout import VideoTokens
from prune_bench.adapters.placement import DeviceMap, place
from prune_bench.adapters.preprocess import frames_to_pixels
from prune_bench.adapters.vision_capture import capture_vision_attention
from prune_bench.core.context import VisionAttention
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.strategy import ModelInfo
from prune_bench.errors import UserError


class LlavaOnevisionAdapter(Adapter):
    """Runs ``LlavaOnevisionForConditionalGeneration`` checkpoints under a pruning plan."""

    name = "llava_onevision"
    architectures: dict[str, Callable[[], Any]] = {
        "llava-onevision-7b": llava_onevision_7b_config,
        "llava-video-7b": llava_onevision_7b_config,  # same HF class and shapes; LLaVA-Video samples 64 frames
        "llava-onevision-72b": llava_onevision_72b_config,
        "tiny-llava-onevision": tiny_llava_onevision_config,
    }
    tiny_architectures: dict[str, Callable[..., Any]] = {"tiny-llava-onevision": tiny_llava_onevision_config}

    def __init__(
        self, model: Any, tokenizer: Any | None = None, prompt_format: PromptFormat | None = None
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prompt_format = prompt_format or PromptFormat()
        self.config = model.config
        inner = model.model
        self.vision_tower: nn.Module = inner.vision_tower
        self.projector: nn.Module = inner.multi_modal_projector
        self.lm: nn.Module = inner.language_model
        self.image_newline: torch.Tensor = inner.image_newline
        self._pool = inner.apply_pooling
        text = self.config.text_config
        self.runner = decoder_runner(self.lm, model.lm_head, rope_1d(self.lm.rotary_emb), text)

    # ------------------------------------------------------------------------------- loading
    @classmethod
    def handles(cls, config: Any) -> bool:
        return type(config).__name__ == "LlavaOnevisionConfig"

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        attn: str = "sdpa",
        device_map: DeviceMap | None = None,
    ) -> LlavaOnevisionAdapter:
        from transformers import LlavaOnevisionForConditionalGeneration

        where = resolve_model_path(path_or_id)
        model, tokenizer = load_hf_checkpoint(
            LlavaOnevisionForConditionalGeneration, where, path_or_id, default_dtype(device, dtype), attn, device_map
        )
        return cls(place(model, device, device_map), tokenizer, PromptFormat.from_model_dir(where))

    @classmethod
    def from_config(
        cls,
        config: Any,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        seed: int = 0,
        attn: str = "sdpa",
    ) -> LlavaOnevisionAdapter:
        """Random weights at ``config``'s shape, built directly on ``device`` (no download)."""
        from transformers import LlavaOnevisionForConditionalGeneration

        model = random_hf_model(
            LlavaOnevisionForConditionalGeneration, config, device, default_dtype(device, dtype), seed, attn
        )
        return cls(model, None, PromptFormat())

    @classmethod
    def tiny(
        cls, name: str = "tiny-llava-onevision", *, num_layers: int = 8, seed: int = 0
    ) -> LlavaOnevisionAdapter:
        """64-pixel frames of 8 x 8 patches, pooled to 4 x 4 tokens a frame."""
        return cls.from_config(cls._tiny_config(name, num_layers=num_layers, image_size=64), seed=seed)

    # -------------------------------------------------------------------------------- layout
    @property
    def patch_grid(self) -> int:
        v = self.config.vision_config
        return int(v.image_size // v.patch_size)

    @property
    def pooled_grid(self) -> int:
        return math.ceil(self.patch_grid / 2)

    @property
    def frame_size(self) -> tuple[int, int]:  # type: ignore[override]
        size = int(self.config.vision_config.image_size)
        return (size, size)

    def video_token_count(self, num_frames: int) -> int:
        return num_frames * self.pooled_grid**2 + 1

    @property
    def plain_text_vocab(self) -> int:
        cfg = self.config
        return int(min(cfg.text_config.vocab_size, cfg.video_token_id, cfg.image_token_id))

    def model_info(self, num_frames: int) -> ModelInfo:
        text = self.config.text_config
        return ModelInfo(
            num_layers=text.num_hidden_layers,
            num_frames=num_frames,
            tokens_per_frame=self.pooled_grid**2,
            hidden_size=text.hidden_size,
            family=self.name,
            capabilities=frozenset({"vision_attention"}),
        )

    # -------------------------------------------------------------------------------- encode
    def _video_features(
        self, pixels: torch.Tensor, capture_vision: bool
    ) -> tuple[torch.Tensor, Callable[[], VisionAttention] | None]:
        layer = self.config.vision_feature_layer
        if not isinstance(layer, int):
            raise UserError(
                "multi-layer vision features are not supported yet; use a checkpoint with one vision_feature_layer"
            )
        with capture_vision_attention(self.vision_tower, layer, enabled=capture_vision) as captured:
            out = self.vision_tower(pixels, output_hidden_states=True)
        feats = out.hidden_states[layer]
        if self.config.vision_feature_select_strategy == "default":
            feats = feats[:, 1:]
        feats = self._pool(self.projector(feats))  # [T, P, D]
        vision = None
        if capture_vision:
            pool = self._pool_scores

            def vision() -> VisionAttention:
                received, keys = captured.result()
                return VisionAttention(received=pool(received[..., None])[..., 0], keys=pool(keys))

        return feats, vision

    def _pool_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Pool per-patch maps ``[T, g*g, c]`` exactly as ``apply_pooling`` pools the features."""
        g = self.patch_grid
        t, _, c = x.shape
        grid = x.float().view(t, g, g, c).permute(0, 3, 1, 2)
        pooled = nn.functional.interpolate(grid, size=[self.pooled_grid] * 2, mode="bilinear")
        return pooled.permute(0, 2, 3, 1).reshape(t, -1, c)

    def video_span(self, n_video: int) -> list[int]:
        return [self.config.video_token_id] * n_video

    def encode_video(self, frames_pixels: torch.Tensor, capture_vision: bool) -> VideoTokens:
        feats, vision = self._video_features(frames_pixels, capture_vision)
        t, p, d = feats.shape
        newline = self.image_newline.to(device=feats.device, dtype=feats.dtype)  # may sit on another GPU
        video = torch.cat([feats.reshape(t * p, d), newline[None]], dim=0)
        g = self.pooled_grid
        return VideoTokens(video, (g, g), frames=t, newline=True, vision=vision)

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        fmt = self.prompt_format
        size = self.config.vision_config.image_size
        return frames_to_pixels(frames, size, fmt.pixel_mean, fmt.pixel_std, self.model.dtype, self.device)

    def reference_inputs(self, ids: Sequence[int], frames_pixels: torch.Tensor) -> dict[str, Any]:
        input_ids = torch.tensor([list(ids)], device=self.device)
        return {"input_ids": input_ids, "pixel_values_videos": frames_pixels[None]}


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(LlavaOnevisionAdapter)
