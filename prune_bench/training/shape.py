"""The architecture of the default model: :class:`ModelShape`, its ``LlavaOnevisionConfig``, and how
many placeholder tokens a video takes in the prompt."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class ModelShape:
    """The architecture; defaults are the shipped model, ``tiny()`` is for CPU smoke tests."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    vision_intermediate: int = 512
    text_hidden: int = 256
    text_layers: int = 8
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 768

    @classmethod
    def tiny(cls) -> ModelShape:
        return cls(
            image_size=32,
            vision_hidden=32,
            vision_layers=1,
            vision_heads=2,
            vision_intermediate=64,
            text_hidden=32,
            text_layers=2,
            text_heads=2,
            text_kv_heads=1,
            text_intermediate=64,
        )


def build_config(
    shape: ModelShape, vocab_size: int, video_token_id: int, image_token_id: int, pad_id: int
) -> Any:
    """The ``LlavaOnevisionConfig`` of the default model."""
    from transformers import LlavaOnevisionConfig

    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": shape.vision_hidden,
            "intermediate_size": shape.vision_intermediate,
            "num_hidden_layers": shape.vision_layers,
            "num_attention_heads": shape.vision_heads,
            "image_size": shape.image_size,
            "patch_size": shape.patch_size,
            "vision_use_head": False,
        },
        text_config={
            "model_type": "qwen2",
            "hidden_size": shape.text_hidden,
            "intermediate_size": shape.text_intermediate,
            "num_hidden_layers": shape.text_layers,
            "num_attention_heads": shape.text_heads,
            "num_key_value_heads": shape.text_kv_heads,
            "vocab_size": vocab_size,
            "max_position_embeddings": 2048,
            "pad_token_id": pad_id,
            "tie_word_embeddings": False,
        },
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        video_token_id=video_token_id,
        image_token_id=image_token_id,
    )
    return config


def video_token_count(shape: ModelShape, num_frames: int) -> int:
    """Placeholders of one video: ``frames x ceil(grid / 2)^2 + 1`` (the newline)."""
    return num_frames * math.ceil(shape.image_size / shape.patch_size / 2) ** 2 + 1
