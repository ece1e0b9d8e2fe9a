"""Adapter for Hugging Face ``InternVLForConditionalGeneration`` (InternVL3; arXiv 2504.10479).

Follows the official repository, OpenGVLab/InternVL at 2410d1dbf208f0e799459aff9376e5747dbf41a2
(``internvl_chat/internvl/model/internvl_chat/modeling_internvl_chat.py`` ``extract_feature`` and
``chat``; ``internvl_chat/eval/mvbench/evaluate_mvbench.py`` for video), through transformers' port
(``models/internvl``: InternViT, pixel shuffle, MLP projector, a Qwen2.5 LLM with 1-D RoPE).

Video layout, as the official video evaluation and HF's ``InternVLProcessor`` build it: every frame is
one 448 x 448 image entry (no tiling, no thumbnail), the tower's last layer without its CLS token is
pixel-shuffled (each 2 x 2 patches into one token, channels concatenated) and projected, and the
prompt lists the frames as ``Frame1: <img><IMG_CONTEXT>*256</img>\\nFrame2: <img>...</img>`` before the
question. The frame labels and the ``<img>`` / ``</img>`` markers are text: they stay, never pruned,
and count as text; only the ``<IMG_CONTEXT>`` tokens are visual. A layout frame is one input frame of
``g/2 x g/2`` tokens (``g = image_size // patch_size``), row-major as the pixel shuffle orders them.
Positions are ``0..N-1``, as HF's model and the official ``chat`` give them.

Vision attention (VisionZip-style strategies): the feature layer's (last layer's) q/k after its q/k
norms, captured by forward hooks; the attention a patch receives is the mean over heads and over all
queries (the CLS query included) of the softmax over all keys, its CLS column then dropped, as the
features drop the CLS token; received attention and keys are averaged over each 2 x 2 patch group the
pixel shuffle turns into one token.

Deliberate differences from the official code:

* the prompt follows the official ``internvl2_5`` conversation template with its system message
  (what ``chat`` and lmms-eval's InternVL use); transformers' converted chat template has no system
  message, and a checkpoint directory's ``prune_bench.json`` can name another template;
* frames are resized by :func:`frames_to_pixels` (bicubic, antialiased, on tensors) rather than
  torchvision's PIL ``Resize``; the pixels differ by rounding;
* random-weight architectures have no tokenizer: each frame label is then one stand-in plain-text id
  per piece Qwen2's tokenizer makes of it (``"\\n"``, ``"Frame"``, each digit, ``":"``, ``" "``), so the
  prompt has the real layout's length, and ``<img>`` / ``</img>`` are the two ids below
  ``<IMG_CONTEXT>``, as in InternVL3's tokenizer (151665, 151666, 151667). With a tokenizer, labels and
  markers are its own ids.

The tower, the pixel shuffle and the projector are the model's own modules, called directly (not
``get_image_features``, whose keywords and output differ across transformers 5.x).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

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
from prune_bench.adapters.configs import internvl3_8b_config, tiny_internvl3_config
from prune_bench.adapters.layout import VideoTokens
from prune_bench.adapters.placement import DeviceMap, place
from prune_bench.adapters.preprocess import frames_to_pixels
from prune_bench.adapters.prompt import DEFAULT_USER_TEXT, LLAVA_CHAT_TEMPLATE
from prune_bench.adapters.vision_capture import capture_projections
from prune_bench.core.context import VisionAttention
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.strategy import ModelInfo
from prune_bench.errors import UserError

#: the official ``internvl2_5`` conversation (InternVL3's), the video right after ``user\n``
INTERNVL_SYSTEM_MESSAGE = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
INTERNVL_CHAT_TEMPLATE = (
    f"<|im_start|>system\n{INTERNVL_SYSTEM_MESSAGE}<|im_end|>\n<|im_start|>user\n{{video}}\n"
    f"{DEFAULT_USER_TEXT}<|im_end|>\n<|im_start|>assistant\n"
)
#: ImageNet statistics, what InternVL's ``build_transform`` and HF's processor normalise with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERNVL_PROMPT_FORMAT = PromptFormat(
    template=INTERNVL_CHAT_TEMPLATE, pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD
)

#: stand-in ids of a frame label's pieces when there is no tokenizer (random-weight architectures)
_STAND_IN = {"\n": 198, "Frame": 37, ":": 25, " ": 220, **{str(d): 15 + d for d in range(10)}}


def internvl_prompt_format(fmt: PromptFormat) -> PromptFormat:
    """A format read from an InternVL checkpoint's directory, with InternVL's template where the
    directory names none and ImageNet statistics where it names no pixel statistics."""
    if fmt.template == LLAVA_CHAT_TEMPLATE:
        fmt = replace(fmt, template=INTERNVL_CHAT_TEMPLATE)
    if fmt.pixel_mean == PromptFormat.pixel_mean:
        fmt = replace(fmt, pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD)
    return fmt


class InternVLAdapter(Adapter):
    """Runs ``InternVLForConditionalGeneration`` checkpoints (InternVL3) under a pruning plan."""

    name = "internvl"
    architectures: ClassVar[dict[str, Callable[[], Any]]] = {
        "internvl3-8b": internvl3_8b_config,
        "tiny-internvl3": tiny_internvl3_config,
    }
    tiny_architectures: ClassVar[dict[str, Callable[..., Any]]] = {"tiny-internvl3": tiny_internvl3_config}

    def __init__(
        self, model: Any, tokenizer: Any | None = None, prompt_format: PromptFormat | None = None
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prompt_format = prompt_format or INTERNVL_PROMPT_FORMAT
        self.config = model.config
        inner = model.model
        self.vision_tower: Any = inner.vision_tower  # InternViT: encoder.layer[i].attention
        self.projector: nn.Module = inner.multi_modal_projector
        self.lm: nn.Module = inner.language_model
        self._pixel_shuffle = inner.pixel_shuffle
        self._labels: dict[int, list[int]] = {}
        ratio = float(self.config.downsample_ratio)
        if ratio != 0.5:
            raise UserError(f"downsample_ratio {ratio} is not supported (InternVL3 uses 0.5)")
        if self.config.vision_feature_select_strategy != "default":
            raise UserError("vision_feature_select_strategy must be 'default' (the CLS token dropped)")
        if not isinstance(self.config.vision_feature_layer, int):
            raise UserError("multi-layer vision features are not supported; use one vision_feature_layer")
        if self.patch_grid % 2:
            raise UserError(
                f"the tower's {self.patch_grid} x {self.patch_grid} patches cannot be pixel-shuffled"
            )
        self.runner = decoder_runner(self.lm, model.lm_head, rope_1d(self.lm.rotary_emb), self.config.text_config)

    # ------------------------------------------------------------------------------- loading
    @classmethod
    def handles(cls, config: Any) -> bool:
        return type(config).__name__ == "InternVLConfig"

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        attn: str = "sdpa",
        device_map: DeviceMap | None = None,
    ) -> InternVLAdapter:
        from transformers import InternVLForConditionalGeneration

        where = resolve_model_path(path_or_id)
        model, tokenizer = load_hf_checkpoint(
            InternVLForConditionalGeneration, where, path_or_id, default_dtype(device, dtype), attn, device_map
        )
        fmt = internvl_prompt_format(PromptFormat.from_model_dir(where))
        return cls(place(model, device, device_map), tokenizer, fmt)

    @classmethod
    def from_config(
        cls,
        config: Any,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        seed: int = 0,
        attn: str = "sdpa",
    ) -> InternVLAdapter:
        """Random weights at ``config``'s shape, built directly on ``device`` (no download)."""
        from transformers import InternVLForConditionalGeneration

        model = random_hf_model(
            InternVLForConditionalGeneration, config, device, default_dtype(device, dtype), seed, attn
        )
        return cls(model, None, None)

    @classmethod
    def tiny(cls, name: str = "tiny-internvl3", *, num_layers: int = 8, seed: int = 0) -> InternVLAdapter:
        """32-pixel frames of 8 x 8 patches, pixel-shuffled to 4 x 4 tokens a frame."""
        return cls.from_config(cls._tiny_config(name, num_layers=num_layers), seed=seed)

    # -------------------------------------------------------------------------------- layout
    @property
    def patch_grid(self) -> int:
        v = self.config.vision_config
        size, patch = v.image_size, v.patch_size
        size = size[0] if isinstance(size, (list, tuple)) else size
        patch = patch[0] if isinstance(patch, (list, tuple)) else patch
        return int(size // patch)

    @property
    def token_grid(self) -> int:
        """Tokens per side of a frame after the pixel shuffle."""
        return self.patch_grid // 2

    @property
    def tokens_per_frame(self) -> int:
        return self.token_grid**2

    @property
    def frame_size(self) -> tuple[int, int]:  # type: ignore[override]
        size = self.config.vision_config.image_size
        return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))

    @property
    def video_token_id(self) -> int:
        return int(self.config.image_token_id)  # frames are image entries (<IMG_CONTEXT>)

    def video_token_count(self, num_frames: int) -> int:
        return num_frames * self.tokens_per_frame

    @property
    def image_markers(self) -> tuple[int, int]:
        """``(<img>, </img>)`` ids: the tokenizer's, or the two ids below ``<IMG_CONTEXT>`` without one."""
        tok = self.tokenizer
        if tok is None:
            return self.video_token_id - 2, self.video_token_id - 1
        start = getattr(tok, "start_image_token_id", None) or tok.convert_tokens_to_ids("<img>")
        end = getattr(tok, "end_image_token_id", None) or tok.convert_tokens_to_ids("</img>")
        if start is None or end is None or tok.unk_token_id in (start, end):
            raise UserError("the tokenizer has no <img> / </img> tokens; is this an InternVL checkpoint?")
        return int(start), int(end)

    @property
    def plain_text_vocab(self) -> int:
        return int(min(self.config.text_config.vocab_size, *self.image_markers, self.video_token_id))

    def frame_label(self, index: int) -> list[int]:
        """The ids of ``Frame{index + 1}: `` (after a newline from the second frame on)."""
        if index not in self._labels:
            text = ("\n" if index else "") + f"Frame{index + 1}: "
            if self.tokenizer is not None:
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            else:
                pieces = (["\n"] if index else []) + ["Frame", *str(index + 1), ":", " "]
                ids = [_STAND_IN[p] for p in pieces]
            self._labels[index] = list(ids)
        return self._labels[index]

    def video_span(self, n_video: int) -> list[int]:
        frames, rest = divmod(n_video, self.tokens_per_frame)
        if rest:
            raise UserError(f"{n_video} video tokens are not whole frames of {self.tokens_per_frame}")
        start, end = self.image_markers
        frame = [start] + [self.video_token_id] * self.tokens_per_frame + [end]
        return [i for t in range(frames) for i in (*self.frame_label(t), *frame)]

    def model_info(self, num_frames: int) -> ModelInfo:
        text = self.config.text_config
        return ModelInfo(
            num_layers=text.num_hidden_layers,
            num_frames=num_frames,
            tokens_per_frame=self.tokens_per_frame,
            hidden_size=text.hidden_size,
            family=self.name,
            capabilities=frozenset({"vision_attention"}),
        )

    # -------------------------------------------------------------------------------- encode
    def _feature_layer(self) -> int:
        """Index of the encoder layer whose output is the features (``hidden_states[l]`` is layer l-1's)."""
        depth = len(self.vision_tower.encoder.layer)
        return self.config.vision_feature_layer % (depth + 1) - 1  # type: ignore[no-any-return]

    def _video_features(
        self, pixels: torch.Tensor, capture_vision: bool
    ) -> tuple[torch.Tensor, Callable[[], VisionAttention] | None]:
        layer = int(self.config.vision_feature_layer)
        attn = self.vision_tower.encoder.layer[self._feature_layer()].attention
        with capture_projections(
            attn.q_norm, attn.k_norm, int(attn.num_heads), enabled=capture_vision
        ) as cap:
            out = self.vision_tower(
                pixel_values=pixels.to(self.model.dtype), output_hidden_states=layer != -1
            )
        feats = (out.last_hidden_state if layer == -1 else out.hidden_states[layer])[:, 1:]  # no CLS
        t, g = feats.shape[0], self.patch_grid
        shuffled = self._pixel_shuffle(feats.reshape(t, g, g, -1), scale_factor=0.5)
        feats = self.projector(shuffled.reshape(t, self.tokens_per_frame, -1))
        if not capture_vision:
            return feats, None
        pool = self._pool_scores

        def vision() -> VisionAttention:
            received, keys = cap.result()
            return VisionAttention(received=pool(received[:, 1:, None])[..., 0], keys=pool(keys[:, 1:]))

        return feats, vision

    def _pool_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-patch maps ``[T, g*g, c]`` averaged over each 2 x 2 patch group the pixel shuffle merges."""
        t, _, c = x.shape
        h = self.token_grid
        return x.float().view(t, h, 2, h, 2, c).mean(dim=(2, 4)).reshape(t, h * h, c)

    def encode_video(self, frames_pixels: torch.Tensor, capture_vision: bool) -> VideoTokens:
        feats, vision = self._video_features(frames_pixels, capture_vision)
        t, p, d = feats.shape
        h = self.token_grid
        return VideoTokens(feats.reshape(t * p, d), (h, h), frames=t, vision=vision)

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        fmt = self.prompt_format
        return frames_to_pixels(
            frames, self.frame_size, fmt.pixel_mean, fmt.pixel_std, self.model.dtype, self.device
        )

    def reference_inputs(self, ids: Sequence[int], frames_pixels: torch.Tensor) -> dict[str, Any]:
        input_ids = torch.tensor([list(ids)], device=self.device)
        return {"input_ids": input_ids, "pixel_values": frames_pixels}


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(InternVLAdapter)
