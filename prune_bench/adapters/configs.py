"""The model shapes the adapters build with random weights (no download): the 7B checkpoints' (speed
work, ``--arch``) and tiny ones (tests, CPU smoke runs and the adapter and strategy contracts).

Each adapter names its own in ``Adapter.architectures`` and ``Adapter.tiny_architectures``; the
builders are re-exported from the adapter modules. ``transformers`` is imported only when one is built.
"""

from __future__ import annotations

from typing import Any


# ------------------------------------------------------------------------- LLaVA-OneVision
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


def _llava_qwen2_7b_text() -> dict[str, Any]:
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
        text_config={"model_type": "qwen2", **_llava_qwen2_7b_text()},
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


# ------------------------------------------------------------------------ Qwen2-VL, Qwen2.5-VL
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


def _tiny_qwen_text(num_layers: int) -> dict[str, Any]:
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


_TINY_QWEN_TOKENS = dict(
    image_token_id=298, video_token_id=299, vision_start_token_id=296, vision_end_token_id=297
)


def tiny_qwen2_vl_config(num_layers: int = 4, patch_size: int = 4) -> Any:
    """A tiny Qwen2-VL for tests and CPU smoke runs (random weights, well under 1M parameters)."""
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config={"model_type": "qwen2_vl_text", **_tiny_qwen_text(num_layers)},
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
        **_TINY_QWEN_TOKENS,
    )


def tiny_qwen2_5_vl_config(num_layers: int = 4, patch_size: int = 4) -> Any:
    """A tiny Qwen2.5-VL (window attention in the tower, absolute-time temporal positions)."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={"model_type": "qwen2_5_vl_text", **_tiny_qwen_text(num_layers)},
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
        **_TINY_QWEN_TOKENS,
    )
