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
strategies is captured from one ViT block's own q/k, per frame pair, pooled over each 2x2 merge unit
as the merger pools the features: Qwen2-VL's last block; Qwen2.5-VL's last full-attention block
(``max(fullatt_block_indexes)``, the last block, 31, in every released checkpoint), whose output is
the merger's input. Its window-attention blocks attend only inside 112-pixel windows, so their
received attention ranks a patch against its window, not its frame, which is not what VisionZip's
dominant tokens are; the full-attention block attends over the whole frame pair as Qwen2-VL's does.
Qwen2.5-VL's tower runs on merge units permuted into windows; the capture undoes that permutation
with the tower's own window index (HF's ``get_window_index`` / ``get_vision_window_index``), so the
scores are in the original patch order, the order of the merged features.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
)
from prune_bench.adapters.configs import (
    qwen2_5_vl_7b_config,
    qwen2_5_vl_72b_config,
    qwen2_vl_7b_config,
    tiny_qwen2_5_vl_config,
    tiny_qwen2_vl_config,
)
from prune_bench.adapters.layout import VideoTokens
from prune_bench.adapters.placement import DeviceMap, place
from prune_bench.adapters.preprocess import frames_to_pixels, temporal_patches
from prune_bench.adapters.prompt import QWEN_CHAT_TEMPLATE as QWEN_CHAT_TEMPLATE
from prune_bench.adapters.prompt import QWEN_PROMPT_FORMAT, qwen_prompt_format
from prune_bench.adapters.vision_capture import CapturedBlockInput, capture_block_attention
from prune_bench.core.context import VisionAttention
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.strategy import ModelInfo
from prune_bench.errors import UserError

#: merged tokens per side of a frame pair by default: 14 x 14 = 196 a pair (LLaVA-OV gives 196 a frame)
DEFAULT_MERGED_SIDE = 14

_CONFIGS = ("Qwen2VLConfig", "Qwen2_5_VLConfig")


def _merge_mrope(x: torch.Tensor, section: Sequence[int]) -> torch.Tensor:
    """``[3, ..., hd]`` per-axis cos/sin -> ``[..., hd]``, as ``apply_multimodal_rotary_pos_emb`` merges."""
    parts = x.split(list(section) * 2, dim=-1)
    return torch.cat([m[i % 3] for i, m in enumerate(parts)], dim=-1)


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
        "qwen2.5-vl-72b": qwen2_5_vl_72b_config,
        "tiny-qwen2-vl": tiny_qwen2_vl_config,
    }
    tiny_architectures: dict[str, Callable[..., Any]] = {
        "tiny-qwen2-vl": tiny_qwen2_vl_config,
        "tiny-qwen2.5-vl": tiny_qwen2_5_vl_config,
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
        self.prompt_format = prompt_format or QWEN_PROMPT_FORMAT
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
        self.frame_size = tuple(frame_size) if frame_size is not None else (side, side)  # type: ignore[assignment]
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
        device_map: DeviceMap | None = None,
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
            cls._model_class(config), where, path_or_id, default_dtype(device, dtype), attn, device_map
        )
        fmt = qwen_prompt_format(PromptFormat.from_model_dir(where))
        return cls(place(model, device, device_map), tokenizer, fmt, frame_size=frame_size)

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

    @classmethod
    def tiny(cls, name: str = "tiny-qwen2-vl", *, num_layers: int = 8, seed: int = 0) -> Qwen2VLAdapter:
        """32 x 32-pixel frames of 8 x 8 patches, merged to 4 x 4 tokens a frame pair."""
        return cls.from_config(cls._tiny_config(name, num_layers=num_layers), seed=seed, frame_size=(32, 32))

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
            family=self.name,
            capabilities=frozenset({"vision_attention"}),
        )

    # -------------------------------------------------------------------------------- vision
    def patchify(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[T, C, H, W]`` -> (``pixel_values_videos``, ``video_grid_thw``), as HF's video processor cuts them."""
        return temporal_patches(pixels, self.temporal_patch, self.patch_size, self.merge)

    @property
    def vision_attention_block(self) -> int:
        """The ViT block whose attention is captured: the last block (Qwen2-VL), the last full-attention
        block (Qwen2.5-VL)."""
        vision = self.config.vision_config
        full = getattr(vision, "fullatt_block_indexes", None)
        return int(max(full)) if full else int(vision.depth) - 1

    def window_index(self, grid: torch.Tensor) -> torch.Tensor | None:
        """Qwen2.5-VL's merge-unit order inside its tower (HF's own window index; None for Qwen2-VL)."""
        vision = self.config.vision_config
        if not hasattr(vision, "fullatt_block_indexes"):
            return None
        method = getattr(self.visual, "get_window_index", None)
        if method is not None:  # transformers up to 5.2x: a method of the tower
            return method(grid)[0]  # type: ignore[no-any-return]
        from transformers.vision_utils import get_vision_window_index  # 5.25: shared by the Qwen towers

        index, _ = get_vision_window_index(
            grid, spatial_merge_size=self.merge, window_size=vision.window_size, patch_size=self.patch_size
        )
        return index  # type: ignore[no-any-return]

    @contextmanager
    def _capture(self, enabled: bool, grid: torch.Tensor) -> Iterator[CapturedBlockInput | None]:
        attn = self.visual.blocks[self.vision_attention_block].attn
        order = self.window_index(grid) if enabled else None
        with capture_block_attention(attn, self.merge**2, enabled=enabled, unit_order=order) as captured:
            yield captured

    def _video_features(
        self, flat: torch.Tensor, grid: torch.Tensor, capture_vision: bool = False
    ) -> tuple[torch.Tensor, Callable[[], VisionAttention] | None]:
        with self._capture(capture_vision, grid) as captured:
            out = self.visual(flat.to(self.visual.dtype), grid_thw=grid)
        # The tower returns BaseModelOutputWithPooling (merged tokens in pooler_output) in 5.x; a tensor before.
        feats = getattr(out, "pooler_output", out)
        return feats, captured.result if captured is not None else None

    def _rope_kwargs(self, ids: torch.Tensor, grid: torch.Tensor) -> dict[str, Any]:
        """What the model's ``get_rope_index`` (and forward) take besides the ids ``[1, N]``."""
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
        return kwargs

    def rope_positions(self, input_ids: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """The model's own M-RoPE ids ``[3, N]`` for one prompt with one video."""
        ids = input_ids[None]
        position, _ = self._get_rope_index(ids, **self._rope_kwargs(ids, grid))
        return position[:, 0]

    # -------------------------------------------------------------------------------- encode
    def video_span(self, n_video: int) -> list[int]:
        cfg = self.config
        return [cfg.vision_start_token_id] + [cfg.video_token_id] * n_video + [cfg.vision_end_token_id]

    @property
    def plain_text_vocab(self) -> int:
        cfg = self.config
        special = (cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id)
        return int(min(cfg.text_config.vocab_size, *special))

    def encode_video(self, frames_pixels: torch.Tensor, capture_vision: bool) -> VideoTokens:
        """``frames_pixels`` is ``[T, C, H, W]`` as :meth:`pixels` makes it (any H, W of the right multiple)."""
        flat, grid = self.patchify(frames_pixels.to(self.device))
        feats, vision = self._video_features(flat, grid, capture_vision)
        _, gh, gw = (int(v) for v in grid[0])
        rows, cols = gh // self.merge, gw // self.merge
        return VideoTokens(feats, (rows, cols), frames=int(frames_pixels.shape[0]), vision=vision, thw=grid)

    def positions(self, input_ids: torch.Tensor, video: VideoTokens) -> torch.Tensor:
        assert video.thw is not None
        return self.rope_positions(input_ids, video.thw)

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``[T, H, W, 3]`` -> normalised ``[T, 3, *frame_size]`` in the model's dtype."""
        fmt = self.prompt_format
        return frames_to_pixels(
            frames, self.frame_size, fmt.pixel_mean, fmt.pixel_std, self.model.dtype, self.device
        )

    def reference_inputs(self, ids: Sequence[int], frames_pixels: torch.Tensor) -> dict[str, Any]:
        flat, grid = self.patchify(frames_pixels.to(self.device))
        input_ids = torch.tensor([list(ids)], device=self.device)
        return {"input_ids": input_ids, "pixel_values_videos": flat, **self._rope_kwargs(input_ids, grid)}


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(Qwen2VLAdapter)
