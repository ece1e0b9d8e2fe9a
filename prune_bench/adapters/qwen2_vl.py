"""Adapter for Hugging Face ``Qwen2VLForConditionalGeneration`` and ``Qwen2_5_VLForConditionalGeneration``.

Video layout (as the HF processor and model build it): frames are resized to a multiple of
``patch_size * spatial_merge_size``, grouped in pairs (``temporal_patch_size`` frames; an odd last
frame is repeated), cut into ``patch_size`` patches, and the merger turns every 2x2 patches of one
frame pair into one LLM token. A video of ``T`` frames at ``H x W`` pixels therefore gives
``ceil(T/2) * (H/28) * (W/28)`` tokens, in (frame pair, row, col) order. In the layout of the
:class:`TokenState`, ``frame`` is the temporal index of the merged grid (one per frame pair).
``<|vision_start|>`` and ``<|vision_end|>`` around the video placeholders stay text tokens.

Positions are Qwen's 3-D M-RoPE ids ``[3, N]`` computed by the model's own ``get_rope_index``;
decoding continues at ``max + 1`` on all three axes, as HF's ``rope_deltas`` does. All sizes and
token ids are read from the config, the input ids and the pixel tensor.

We run the vision tower ourselves on patches we cut from the frames (no processor needed), and call
the language model's layers through :class:`DecoderRunner`. Vision attention for VisionZip-style
strategies is captured for Qwen2-VL (last ViT block, per frame pair, pooled over each 2x2 merge unit);
Qwen2.5-VL's tower runs on window-permuted patches and is not supported yet: a stage that asks for
its vision attention gets a clear error.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from prune_bench.adapters.base import (
    LLAVA_CHAT_TEMPLATE,
    Adapter,
    EncodedSample,
    PromptFormat,
    decoder_runner,
    default_dtype,
    load_hf_checkpoint,
    random_hf_model,
    resolve_model_path,
)
from prune_bench.adapters.llava_onevision import synthetic_scenes
from prune_bench.core.attention import rotate_half
from prune_bench.core.context import VisionAttention
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import ModelInfo
from prune_bench.errors import UserError

QWEN_CHAT_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{video}{question}\n"
    "{options}\nAnswer with the option's letter from the given choices directly.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
# OpenAI CLIP statistics, what Qwen2-VL's image and video processors normalise with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: merged tokens per side of a frame pair by default: 14 x 14 = 196 a pair (LLaVA-OV gives 196 a frame)
DEFAULT_MERGED_SIDE = 14

_CONFIGS = ("Qwen2VLConfig", "Qwen2_5_VLConfig")


# ------------------------------------------------------------------------------------ configs
def _qwen2_7b_text(max_position_embeddings: int) -> dict[str, Any]:
    return dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        use_sliding_window=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
        tie_word_embeddings=False,
    )


# Token ids of the Qwen2-VL tokenizer (shared by Qwen2.5-VL).
_QWEN_TOKENS = dict(
    image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653
)


def qwen2_vl_7b_config() -> Any:
    """Qwen2-VL-7B-Instruct's shape, from its ``config.json`` as we know it.

    Not checked against the hub file here (no network): ``max_position_embeddings`` 32768 and the
    vision tower's ``mlp_ratio`` 4 / ``num_heads`` 16 are from memory; the remaining values are the
    ones the task states and the HF defaults agree with.
    """
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config={"model_type": "qwen2_vl_text", **_qwen2_7b_text(32768)},
        vision_config={
            "model_type": "qwen2_vl_vision",
            "depth": 32,
            "embed_dim": 1280,
            "hidden_size": 3584,
            "mlp_ratio": 4,
            "num_heads": 16,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "hidden_act": "quick_gelu",
        },
        tie_word_embeddings=False,
        **_QWEN_TOKENS,
    )


def qwen2_5_vl_7b_config() -> Any:
    """Qwen2.5-VL-7B-Instruct's shape, from its ``config.json`` as we know it.

    Not checked against the hub file here (no network): ``max_position_embeddings`` 128000, the
    vision MLP ``intermediate_size`` 3420, ``window_size`` 112, ``fullatt_block_indexes`` [7, 15, 23, 31]
    and ``tokens_per_second`` 2 are from memory.
    """
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={"model_type": "qwen2_5_vl_text", **_qwen2_7b_text(128000)},
        vision_config={
            "model_type": "qwen2_5_vl_vision",
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "out_hidden_size": 3584,
            "num_heads": 16,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2,
            "hidden_act": "silu",
        },
        tie_word_embeddings=False,
        **_QWEN_TOKENS,
    )


def _tiny_text(num_layers: int) -> dict[str, Any]:
    return dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=300,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10_000.0, "mrope_section": [2, 3, 3]},
        tie_word_embeddings=False,
        bos_token_id=None,  # Qwen's defaults (151643/151645) lie outside the tiny vocabulary
        eos_token_id=None,
    )


_TINY_TOKENS = dict(
    image_token_id=298, video_token_id=299, vision_start_token_id=296, vision_end_token_id=297
)


def tiny_qwen2_vl_config(num_layers: int = 4, patch_size: int = 4) -> Any:
    """A tiny Qwen2-VL for tests and CPU smoke runs (random weights, well under 1M parameters)."""
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config={"model_type": "qwen2_vl_text", **_tiny_text(num_layers)},
        vision_config={
            "model_type": "qwen2_vl_vision",
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "mlp_ratio": 2,
            "num_heads": 2,
            "patch_size": patch_size,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        tie_word_embeddings=False,
        **_TINY_TOKENS,
    )


def tiny_qwen2_5_vl_config(num_layers: int = 4, patch_size: int = 4) -> Any:
    """A tiny Qwen2.5-VL (window attention in the tower, absolute-time temporal positions)."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={"model_type": "qwen2_5_vl_text", **_tiny_text(num_layers)},
        vision_config={
            "model_type": "qwen2_5_vl_vision",
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "out_hidden_size": 64,
            "num_heads": 2,
            "patch_size": patch_size,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 4 * patch_size,  # 2 x 2 merged tokens a window
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        tie_word_embeddings=False,
        **_TINY_TOKENS,
    )


def _merge_mrope(x: torch.Tensor, section: Sequence[int]) -> torch.Tensor:
    """``[3, ..., hd]`` per-axis cos/sin -> ``[..., hd]``, as ``apply_multimodal_rotary_pos_emb`` merges."""
    parts = x.split(list(section) * 2, dim=-1)
    return torch.cat([m[i % 3] for i, m in enumerate(parts)], dim=-1)


@dataclass
class VisionCapture:
    """The inputs of the ViT's last attention, kept by a pre-hook; scores are computed when asked.

    ``received`` is the attention each patch receives inside its own frame pair (the tower attends per
    temporal patch), mean over heads and queries, from the block's own post-RoPE q/k; ``keys`` are the
    pre-RoPE keys averaged over heads (content, not position). Both are then averaged over each
    ``merge_unit`` consecutive patches, which is exactly the group the merger turns into one token.
    """

    attn: nn.Module
    merge_unit: int
    hidden: torch.Tensor | None = None
    cu_seqlens: torch.Tensor | None = None
    rope: tuple[torch.Tensor, torch.Tensor] | None = None

    def hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.hidden = (args[0] if args else kwargs["hidden_states"]).detach()
        self.cu_seqlens = kwargs["cu_seqlens"] if "cu_seqlens" in kwargs else args[1]
        self.rope = kwargs.get("position_embeddings")

    def qkv(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(post-RoPE q, post-RoPE k, v, pre-RoPE k), each ``[L, heads, hd]`` in float32."""
        if self.hidden is None or self.rope is None:
            raise RuntimeError("the vision tower's attention was not captured")
        n, heads = self.hidden.shape[0], int(self.attn.num_heads)
        q, k, v = self.attn.qkv(self.hidden).float().reshape(n, 3, heads, -1).unbind(1)
        cos, sin = (x.float()[:, None] for x in self.rope)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin, v, k

    def segments(self) -> Iterator[tuple[int, int]]:
        assert self.cu_seqlens is not None
        bounds = self.cu_seqlens.tolist()
        yield from zip(bounds[:-1], bounds[1:], strict=True)

    def probs(self, q: torch.Tensor, k: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Softmax attention of one segment, ``[heads, S, S]``."""
        scores = torch.einsum("qhd,khd->hqk", q[start:end], k[start:end]) * float(self.attn.scaling)
        return torch.softmax(scores, dim=-1)

    def result(self) -> VisionAttention:
        q, k, _, k_raw = self.qkv()
        received = torch.cat([self.probs(q, k, s, e).mean(dim=(0, 1)) for s, e in self.segments()])
        frames = len(self.cu_seqlens) - 1  # type: ignore[arg-type]
        mu = self.merge_unit
        received = received.view(frames, -1, mu).mean(-1)
        keys = k_raw.mean(dim=1)
        return VisionAttention(received=received, keys=keys.view(frames, -1, mu, keys.shape[-1]).mean(2))


# ------------------------------------------------------------------------------------ adapter
class Qwen2VLAdapter(Adapter):
    """Runs ``Qwen2VLForConditionalGeneration`` / ``Qwen2_5_VLForConditionalGeneration`` under a plan.

    :param frame_size: ``(height, width)`` every frame is resized to; both must be multiples of
        ``patch_size * spatial_merge_size``. Default: 14 merged tokens a side (392 px at patch 14).
    :param fps: the sampling rate assumed for Qwen2.5-VL's absolute-time temporal positions
        (``second_per_grid_ts = temporal_patch_size / fps``); qwen-vl-utils samples at 2 fps.
    """

    name = "qwen2_vl"
    architectures: dict[str, Callable[[], Any]] = {
        "qwen2-vl-7b": qwen2_vl_7b_config,
        "qwen2.5-vl-7b": qwen2_5_vl_7b_config,
        "tiny-qwen2-vl": tiny_qwen2_vl_config,
    }

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        prompt_format: PromptFormat | None = None,
        *,
        frame_size: tuple[int, int] | None = None,
        fps: float = 2.0,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prompt_format = prompt_format or PromptFormat(
            template=QWEN_CHAT_TEMPLATE, pixel_mean=CLIP_MEAN, pixel_std=CLIP_STD
        )
        self.config = model.config
        inner = model.model
        self.visual: nn.Module = inner.visual
        self.lm: nn.Module = inner.language_model
        self._get_rope_index = inner.get_rope_index
        vision, text = self.config.vision_config, self.config.text_config
        self.patch_size = int(vision.patch_size)
        self.merge = int(vision.spatial_merge_size)
        self.temporal_patch = int(vision.temporal_patch_size)
        self.fps = fps
        factor = self.patch_size * self.merge
        side = DEFAULT_MERGED_SIDE * factor
        self.frame_size = tuple(frame_size) if frame_size is not None else (side, side)
        if any(s <= 0 or s % factor for s in self.frame_size):
            raise UserError(f"frame_size {self.frame_size} must be positive multiples of {factor}")
        if "sliding_attention" in (getattr(text, "layer_types", None) or []):
            raise UserError("sliding-window attention (use_sliding_window=true) is not supported")
        rotary = self.lm.rotary_emb
        section = (getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None) or {}).get(
            "mrope_section", [16, 24, 24]
        )

        def rope(x: torch.Tensor, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pos = position if position.dim() == 2 else position[None].expand(3, -1)
            cos, sin = rotary(x[None], pos[:, None])  # position ids [3, batch=1, N]
            if cos.dim() == 4:  # [3, 1, N, hd]: a version that merges the sections in the attention
                cos, sin = _merge_mrope(cos, section), _merge_mrope(sin, section)
            return cos[0], sin[0]

        self.runner = decoder_runner(self.lm, model.lm_head, rope, text)

    # ------------------------------------------------------------------------------- loading
    @classmethod
    def handles(cls, config: Any) -> bool:
        return type(config).__name__ in _CONFIGS

    @staticmethod
    def _model_class(config: Any) -> Any:
        import transformers

        if type(config).__name__ == "Qwen2_5_VLConfig":
            return transformers.Qwen2_5_VLForConditionalGeneration
        return transformers.Qwen2VLForConditionalGeneration

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        attn: str = "sdpa",
        frame_size: tuple[int, int] | None = None,
    ) -> Qwen2VLAdapter:
        from transformers import AutoConfig

        where = resolve_model_path(path_or_id)
        try:
            config = AutoConfig.from_pretrained(where)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"could not read the config of '{path_or_id}' ({first})") from None
        if not cls.handles(config):
            raise UserError(
                f"'{path_or_id}' is a {type(config).__name__}, not a Qwen2-VL or Qwen2.5-VL checkpoint"
            )
        model, tokenizer = load_hf_checkpoint(
            cls._model_class(config), where, path_or_id, default_dtype(device, dtype), attn
        )
        fmt = PromptFormat.from_model_dir(where)
        if fmt.template == LLAVA_CHAT_TEMPLATE:  # no prune_bench.json: Qwen's own chat format
            fmt = replace(fmt, template=QWEN_CHAT_TEMPLATE)
        if fmt.pixel_mean == PromptFormat.pixel_mean:  # no preprocessor_config.json: Qwen's CLIP stats
            fmt = replace(fmt, pixel_mean=CLIP_MEAN, pixel_std=CLIP_STD)
        return cls(model.to(device), tokenizer, fmt, frame_size=frame_size)

    @classmethod
    def from_config(
        cls,
        config: Any,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        seed: int = 0,
        attn: str = "sdpa",
        frame_size: tuple[int, int] | None = None,
    ) -> Qwen2VLAdapter:
        """Random weights at ``config``'s shape, built directly on ``device`` (no download)."""
        model = random_hf_model(
            cls._model_class(config), config, device, default_dtype(device, dtype), seed, attn
        )
        return cls(model, None, None, frame_size=frame_size)

    # -------------------------------------------------------------------------------- layout
    def merged_grid(self, height: int, width: int) -> tuple[int, int]:
        """LLM tokens per frame pair (rows, cols) for frames of ``height x width`` pixels."""
        factor = self.patch_size * self.merge
        if height % factor or width % factor:
            raise UserError(f"frames of {height}x{width} px are not multiples of {factor}")
        return height // factor, width // factor

    def temporal_groups(self, num_frames: int) -> int:
        return math.ceil(num_frames / self.temporal_patch)

    def video_token_count(self, num_frames: int) -> int:
        rows, cols = self.merged_grid(*self.frame_size)
        return self.temporal_groups(num_frames) * rows * cols

    def model_info(self, num_frames: int) -> ModelInfo:
        """``num_frames`` input frames; the layout's frames are frame pairs (temporal patches)."""
        text = self.config.text_config
        rows, cols = self.merged_grid(*self.frame_size)
        return ModelInfo(
            num_layers=text.num_hidden_layers,
            num_frames=self.temporal_groups(num_frames),
            tokens_per_frame=rows * cols,
            hidden_size=text.hidden_size,
            family="qwen2_vl",
        )

    # -------------------------------------------------------------------------------- vision
    def patchify(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[T, C, H, W]`` -> (``pixel_values_videos`` ``[L, C*tp*p*p]``, ``video_grid_thw`` ``[1, 3]``).

        Exactly the HF video processor's flattening: an odd last frame is repeated, then patches are
        ordered (frame pair, merged row, merged col, row in 2x2, col in 2x2).
        """
        if pixels.dim() != 4:
            raise UserError(f"expected pixels shaped [T, C, H, W], got {tuple(pixels.shape)}")
        tp, p, m = self.temporal_patch, self.patch_size, self.merge
        t, c, h, w = pixels.shape
        self.merged_grid(h, w)
        if pad := -t % tp:
            pixels = torch.cat([pixels, pixels[-1:].expand(pad, -1, -1, -1)])
            t += pad
        gt, gh, gw = t // tp, h // p, w // p
        x = pixels.reshape(gt, tp, c, gh // m, m, p, gw // m, m, p)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gt * gh * gw, c * tp * p * p)
        return x, torch.tensor([[gt, gh, gw]], device=pixels.device)

    @property
    def captures_vision_attention(self) -> bool:
        """Qwen2-VL only: Qwen2.5-VL's window attention permutes the patches inside the tower."""
        return not hasattr(self.config.vision_config, "fullatt_block_indexes")

    @contextmanager
    def _capture(self, enabled: bool) -> Iterator[VisionCapture | None]:
        if not enabled or not self.captures_vision_attention:
            yield None
            return
        captured = VisionCapture(self.visual.blocks[-1].attn, self.merge**2)
        handle = captured.attn.register_forward_pre_hook(captured.hook, with_kwargs=True)
        try:
            yield captured
        finally:
            handle.remove()

    def _video_features(
        self, flat: torch.Tensor, grid: torch.Tensor, capture_vision: bool = False
    ) -> tuple[torch.Tensor, Callable[[], VisionAttention] | None]:
        with self._capture(capture_vision) as captured:
            out = self.visual(flat.to(self.visual.dtype), grid_thw=grid)
        # The tower returns BaseModelOutputWithPooling (merged tokens in pooler_output) in 5.x; a tensor before.
        feats = getattr(out, "pooler_output", out)
        if not capture_vision:
            return feats, None
        return feats, captured.result if captured is not None else _no_vision_attention

    def rope_positions(self, input_ids: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """The model's own M-RoPE ids ``[3, N]`` for one prompt with one video."""
        ids = input_ids[None]
        params = inspect.signature(self._get_rope_index).parameters
        kwargs: dict[str, Any] = {"video_grid_thw": grid}
        if "mm_token_type_ids" in params:  # 5.x: modality per token (0 text, 1 image, 2 video)
            types = torch.zeros_like(ids, dtype=torch.int)
            types[ids == self.config.image_token_id] = 1
            types[ids == self.config.video_token_id] = 2
            kwargs["mm_token_type_ids"] = types
        # (4.x found videos by <|vision_start|> instead; our prompts always have it before the video.)
        if "second_per_grid_ts" in params:  # Qwen2.5-VL: temporal ids in absolute time
            kwargs["second_per_grid_ts"] = torch.tensor([self.temporal_patch / self.fps], device=ids.device)
        position, _ = self._get_rope_index(ids, **kwargs)
        return position[:, 0]

    # -------------------------------------------------------------------------------- encode
    def video_span(self, n_video: int) -> list[int]:
        cfg = self.config
        return [cfg.vision_start_token_id] + [cfg.video_token_id] * n_video + [cfg.vision_end_token_id]

    def encode_ids(
        self, ids: list[int], frames_pixels: torch.Tensor, answer_ids: list[int] | None, capture_vision: bool
    ) -> EncodedSample:
        """``frames_pixels`` is ``[T, C, H, W]`` as :meth:`pixels` makes it (any H, W of the right multiple)."""
        t0 = time.perf_counter()
        device = self.device
        input_ids = torch.tensor(ids, device=device)
        with torch.no_grad():
            flat, grid = self.patchify(frames_pixels.to(device))
            feats, vision = self._video_features(flat, grid, capture_vision)
            embeds = self.lm.embed_tokens(input_ids)
            slots = torch.nonzero(input_ids == self.config.video_token_id).flatten()
            if slots.numel() != feats.shape[0]:
                raise UserError(
                    f"prompt has {slots.numel()} video placeholders but the video gives {feats.shape[0]} tokens"
                )
            embeds = embeds.index_copy(0, slots, feats.to(embeds.dtype))
            position = self.rope_positions(input_ids, grid)
        n = input_ids.numel()
        kind = torch.full((n,), int(TokenKind.TEXT), dtype=torch.int8, device=device)
        frame = torch.full((n,), -1, dtype=torch.long, device=device)
        row, col = frame.clone(), frame.clone()
        kind[slots] = int(TokenKind.VISUAL)
        _, gh, gw = (int(v) for v in grid[0])
        rows, cols = gh // self.merge, gw // self.merge
        local = torch.arange(slots.numel(), device=device)
        frame[slots] = local // (rows * cols)
        row[slots] = (local % (rows * cols)) // cols
        col[slots] = local % cols
        state = TokenState.from_layout(embeds, kind, frame, row, col, position=position)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return EncodedSample(
            state=state,
            answer_ids=answer_ids,
            vision=vision,
            encode_ms=(time.perf_counter() - t0) * 1000,
            frames=int(frames_pixels.shape[0]),
        )

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``[T, H, W, 3]`` -> normalised ``[T, 3, *frame_size]`` in the model's dtype."""
        if frames.dim() != 4 or frames.shape[-1] != 3:
            raise UserError(f"expected video frames shaped [T, H, W, 3], got {tuple(frames.shape)}")
        fmt, device = self.prompt_format, self.device
        x = frames.to(device).permute(0, 3, 1, 2).float() / 255.0
        if tuple(x.shape[-2:]) != self.frame_size:
            x = F.interpolate(x, size=self.frame_size, mode="bicubic", align_corners=False, antialias=True)
            x = x.clamp(0, 1)
        mean = torch.tensor(fmt.pixel_mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(fmt.pixel_std, device=device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.model.dtype)

    def encode_synthetic(
        self, num_frames: int, text_tokens: int, *, capture_vision: bool, seed: int = 0
    ) -> EncodedSample:
        g = torch.Generator().manual_seed(seed)
        frames = synthetic_scenes(num_frames, max(self.frame_size), g)
        cfg = self.config
        special = (cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id)
        vocab = min(cfg.text_config.vocab_size, *special)
        text = torch.randint(0, vocab, (text_tokens,), generator=g).tolist()
        split = min(14, text_tokens // 2)  # a system-prompt-like prefix, then the video, then the question
        ids = text[:split] + self.video_span(self.video_token_count(num_frames)) + text[split:]
        return self.encode_ids(ids, self.pixels(frames), None, capture_vision)


def _no_vision_attention() -> VisionAttention:
    raise UserError(
        "vision-tower attention is not captured for Qwen2.5-VL yet (its window attention permutes the "
        "patches); strategies that need it (VisionZip-style) run on qwen2_vl and llava_onevision checkpoints"
    )


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(Qwen2VLAdapter)
