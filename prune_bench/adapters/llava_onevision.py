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
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prune_bench.adapters.base import (
    Adapter,
    EncodedSample,
    PromptFormat,
    decoder_runner,
    default_dtype,
    frames_to_pixels,
    load_hf_checkpoint,
    random_hf_model,
    resolve_model_path,
)
from prune_bench.adapters.vision_capture import capture_vision_attention
from prune_bench.core.context import VisionAttention
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import ModelInfo
from prune_bench.errors import UserError


def _siglip_so400m(num_layers: int = 26) -> dict[str, Any]:
    # LLaVA-OneVision deletes SigLIP-so400m's last encoder layer: 26 of 27 are used.
    return dict(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=num_layers,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
        vision_use_head=False,
    )


def _qwen2_7b() -> dict[str, Any]:
    return dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        tie_word_embeddings=False,
    )


def llava_onevision_7b_config() -> Any:
    """LLaVA-OneVision-7B's shape (lmms-lab/llava-onevision-qwen2-7b-ov, HF port)."""
    from transformers import LlavaOnevisionConfig

    return LlavaOnevisionConfig(
        vision_config={"model_type": "siglip_vision_model", **_siglip_so400m()},
        text_config={"model_type": "qwen2", **_qwen2_7b()},
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        video_token_id=151647,
        image_token_id=151646,
    )


def tiny_llava_onevision_config(num_layers: int = 4, image_size: int = 32, patch_size: int = 8) -> Any:
    """A tiny config for tests and CPU smoke runs (random weights, ~1M parameters)."""
    from transformers import LlavaOnevisionConfig

    return LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
            "vision_use_head": False,
        },
        text_config={
            "model_type": "qwen2",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 300,
            "max_position_embeddings": 4096,
        },
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        video_token_id=299,
        image_token_id=298,
    )


class LlavaOnevisionAdapter(Adapter):
    """Runs ``LlavaOnevisionForConditionalGeneration`` checkpoints under a pruning plan."""

    name = "llava_onevision"
    architectures: dict[str, Callable[[], Any]] = {
        "llava-onevision-7b": llava_onevision_7b_config,
        "llava-video-7b": llava_onevision_7b_config,  # same HF class and shapes; LLaVA-Video samples 64 frames
        "tiny-llava-onevision": tiny_llava_onevision_config,
    }

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
        rotary = self.lm.rotary_emb

        def rope(x: torch.Tensor, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            cos, sin = rotary(x[None], position[None])
            return cos[0], sin[0]

        self.runner = decoder_runner(self.lm, model.lm_head, rope, text)

    # ------------------------------------------------------------------------------- loading
    @classmethod
    def handles(cls, config: Any) -> bool:
        return type(config).__name__ == "LlavaOnevisionConfig"

    @classmethod
    def from_pretrained(
        cls, path_or_id: str, *, device: str = "cpu", dtype: torch.dtype | None = None, attn: str = "sdpa"
    ) -> LlavaOnevisionAdapter:
        from transformers import LlavaOnevisionForConditionalGeneration

        where = resolve_model_path(path_or_id)
        model, tokenizer = load_hf_checkpoint(
            LlavaOnevisionForConditionalGeneration, where, path_or_id, default_dtype(device, dtype), attn
        )
        return cls(model.to(device), tokenizer, PromptFormat.from_model_dir(where))

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

    # -------------------------------------------------------------------------------- layout
    @property
    def patch_grid(self) -> int:
        v = self.config.vision_config
        return int(v.image_size // v.patch_size)

    @property
    def pooled_grid(self) -> int:
        return math.ceil(self.patch_grid / 2)

    def video_token_count(self, num_frames: int) -> int:
        return num_frames * self.pooled_grid**2 + 1

    def model_info(self, num_frames: int) -> ModelInfo:
        text = self.config.text_config
        return ModelInfo(
            num_layers=text.num_hidden_layers,
            num_frames=num_frames,
            tokens_per_frame=self.pooled_grid**2,
            hidden_size=text.hidden_size,
            family="llava_onevision",
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

    def encode_ids(
        self, ids: list[int], frames_pixels: torch.Tensor, answer_ids: list[int] | None, capture_vision: bool
    ) -> EncodedSample:
        t0 = time.perf_counter()
        device = self.device
        input_ids = torch.tensor(ids, device=device)
        with torch.no_grad():
            feats, vision = self._video_features(frames_pixels, capture_vision)
            t, p, d = feats.shape
            video = torch.cat([feats.reshape(t * p, d), self.image_newline.to(feats.dtype)[None]], dim=0)
            embeds = self.lm.embed_tokens(input_ids)
            slots = torch.nonzero(input_ids == self.config.video_token_id).flatten()
            if slots.numel() != video.shape[0]:
                raise UserError(
                    f"prompt has {slots.numel()} video placeholders but the video gives {video.shape[0]} tokens"
                )
            embeds = embeds.index_copy(0, slots, video.to(embeds.dtype))
        n = input_ids.numel()
        kind = torch.full((n,), int(TokenKind.TEXT), dtype=torch.int8, device=device)
        frame = torch.full((n,), -1, dtype=torch.long, device=device)
        row, col = frame.clone(), frame.clone()
        vis_slots = slots[:-1]
        kind[vis_slots] = int(TokenKind.VISUAL)
        kind[slots[-1]] = int(TokenKind.NEWLINE)
        g = self.pooled_grid
        local = torch.arange(vis_slots.numel(), device=device)
        frame[vis_slots] = local // (g * g)
        row[vis_slots] = (local % (g * g)) // g
        col[vis_slots] = local % g
        state = TokenState.from_layout(embeds, kind, frame, row, col)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return EncodedSample(
            state=state,
            answer_ids=answer_ids,
            vision=vision,
            encode_ms=(time.perf_counter() - t0) * 1000,
            frames=t,
        )

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        fmt = self.prompt_format
        size = self.config.vision_config.image_size
        return frames_to_pixels(frames, size, fmt.pixel_mean, fmt.pixel_std, self.model.dtype, self.device)

    def encode_synthetic(
        self, num_frames: int, text_tokens: int, *, capture_vision: bool, seed: int = 0
    ) -> EncodedSample:
        g = torch.Generator().manual_seed(seed)
        size = self.config.vision_config.image_size
        frames = synthetic_scenes(num_frames, size, g)
        vocab = min(
            self.config.text_config.vocab_size, self.config.video_token_id, self.config.image_token_id
        )
        text = torch.randint(0, vocab, (text_tokens,), generator=g).tolist()
        split = min(14, text_tokens // 2)  # a system-prompt-like prefix, then the video, then the question
        ids = text[:split] + self.video_span(self.video_token_count(num_frames)) + text[split:]
        return self.encode_ids(ids, self.pixels(frames), None, capture_vision)


def synthetic_scenes(
    num_frames: int, size: int, generator: torch.Generator, frames_per_scene: int = 8
) -> torch.Tensor:
    """uint8 ``[T, size, size, 3]``: scenes of ``frames_per_scene`` frames, each a random smooth image
    held still with sensor noise and a square moving across it.

    Speed runs use it instead of pure noise so that methods exploiting temporal redundancy (HieraVid's
    segments, DyCoke's merging) meet the structure real videos have: a random-pixel video makes every
    frame its own segment and every token unique, which flatters some methods and penalises others.
    """
    scenes = (num_frames + frames_per_scene - 1) // frames_per_scene
    coarse = torch.rand(scenes, 3, 8, 8, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    video = images.repeat_interleave(frames_per_scene, dim=0)[:num_frames].clone()  # [T, 3, H, W]
    side = max(2, size // 8)
    for t in range(num_frames):  # a handful of frames: a Python loop over frames is fine here
        x = (t * size // max(1, num_frames)) % (size - side)
        video[t, :, size // 2 - side // 2 : size // 2 + side // 2, x : x + side] = 1.0
    video = video + 0.02 * torch.randn(video.shape, generator=generator)
    return (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(LlavaOnevisionAdapter)
