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


def _qwen2_5_vl_vision(intermediate_size: int, out_hidden_size: int) -> dict[str, Any]:
    """Qwen2.5-VL's 32-block ViT with window attention (full attention every 8th block), merged 2x2 into
    ``out_hidden_size``; the 7B and 72B towers differ only in their MLP width and the merger's output."""
    return {
        "model_type": "qwen2_5_vl_vision",
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": intermediate_size,
        "out_hidden_size": out_hidden_size,
        "num_heads": 16,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "hidden_act": "silu",
    }


def qwen2_5_vl_7b_config() -> Any:
    """Qwen2.5-VL-7B-Instruct's shape, from its ``config.json`` as we know it.

    Not checked against the hub file here (no network): ``max_position_embeddings`` 128000, the
    vision MLP ``intermediate_size`` 3420, ``window_size`` 112, ``fullatt_block_indexes`` [7, 15, 23, 31]
    and ``tokens_per_second`` 2 are from memory.
    """
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={"model_type": "qwen2_5_vl_text", **_qwen2_7b_text(128000)},
        vision_config=_qwen2_5_vl_vision(intermediate_size=3420, out_hidden_size=3584),
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


# ------------------------------------------------------------------------------------- Qwen3-VL
def _qwen3_vl_vision(out_hidden_size: int) -> dict[str, Any]:
    # The SigLIP-2-so400m-shaped tower of every released Qwen3-VL checkpoint (2B to 235B).
    return dict(
        depth=27,
        hidden_size=1152,
        intermediate_size=4304,
        num_heads=16,
        in_channels=3,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=out_hidden_size,
        num_position_embeddings=2304,
        deepstack_visual_indexes=[8, 16, 24],
        hidden_act="gelu_pytorch_tanh",
    )


def _qwen3_vl_text(**shape: Any) -> dict[str, Any]:
    return dict(
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=262144,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        attention_bias=False,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
        **shape,
    )


def qwen3_vl_8b_config() -> Any:
    """Qwen3-VL-8B-Instruct's shape, from its ``config.json`` as we know it.

    Not checked against the hub file here (no network): 36 layers, hidden 4096, MLP 12288, 32 heads,
    8 KV heads, head_dim 128 and the tower above are from memory; the 30B-A3B's values agree with
    Megatron-LM's published arguments for it.
    """
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config={
            "model_type": "qwen3_vl_text",
            **_qwen3_vl_text(
                hidden_size=4096,
                intermediate_size=12288,
                num_hidden_layers=36,
                num_attention_heads=32,
                num_key_value_heads=8,
            ),
        },
        vision_config={"model_type": "qwen3_vl_vision", **_qwen3_vl_vision(4096)},
        tie_word_embeddings=False,
        **_QWEN_TOKENS,
    )


def qwen3_vl_30b_a3b_config() -> Any:
    """Qwen3-VL-30B-A3B-Instruct's shape (MoE: 128 experts, 8 a token), as Megatron-LM's arguments for
    it give it (48 layers, hidden 2048, expert MLP 768, 32 heads, 4 KV heads, head_dim 128, rope 5e6)."""
    from transformers import Qwen3VLMoeConfig

    return Qwen3VLMoeConfig(
        text_config={
            "model_type": "qwen3_vl_moe_text",
            **_qwen3_vl_text(
                hidden_size=2048,
                intermediate_size=6144,
                num_hidden_layers=48,
                num_attention_heads=32,
                num_key_value_heads=4,
                moe_intermediate_size=768,
                num_experts=128,
                num_experts_per_tok=8,
                decoder_sparse_step=1,
            ),
        },
        vision_config={"model_type": "qwen3_vl_moe_vision", **_qwen3_vl_vision(2048)},
        tie_word_embeddings=False,
        **_QWEN_TOKENS,
    )


def _tiny_qwen3_vl(num_layers: int, patch_size: int, **text: Any) -> dict[str, Any]:
    """Text and vision config dicts of a tiny Qwen3-VL: QK-norm, interleaved M-RoPE, DeepStack features
    from the tower's blocks 0 and 1 (added after LLM layers 0 and 1)."""
    vision = dict(
        depth=3,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=64,
        num_position_embeddings=16,  # a 4 x 4 learned grid, interpolated to each frame's
        deepstack_visual_indexes=[0, 1],
    )
    language = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=300,
        max_position_embeddings=4096,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10_000.0,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        },
        bos_token_id=None,
        eos_token_id=None,
        **text,
    )
    return {"text_config": language, "vision_config": vision}


def tiny_qwen3_vl_config(num_layers: int = 4, patch_size: int = 4) -> Any:
    """A tiny dense Qwen3-VL for tests and CPU smoke runs (random weights)."""
    from transformers import Qwen3VLConfig

    parts = _tiny_qwen3_vl(num_layers, patch_size)
    return Qwen3VLConfig(
        text_config={"model_type": "qwen3_vl_text", **parts["text_config"]},
        vision_config={"model_type": "qwen3_vl_vision", **parts["vision_config"]},
        tie_word_embeddings=False,
        **_TINY_QWEN_TOKENS,
    )


def tiny_qwen3_vl_moe_config(num_layers: int = 4, patch_size: int = 4) -> Any:
    """A tiny Qwen3-VL-MoE (4 experts, 2 a token) for tests and CPU smoke runs (random weights)."""
    from transformers import Qwen3VLMoeConfig

    parts = _tiny_qwen3_vl(
        num_layers, patch_size, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2
    )
    return Qwen3VLMoeConfig(
        text_config={"model_type": "qwen3_vl_moe_text", **parts["text_config"]},
        vision_config={"model_type": "qwen3_vl_moe_vision", **parts["vision_config"]},
        tie_word_embeddings=False,
        **_TINY_QWEN_TOKENS,
    )


# ------------------------------------------------------------------------------------ InternVL3
def internvl3_8b_config() -> Any:
    """InternVL3-8B's shape (OpenGVLab/InternVL3-8B-hf): InternViT-300M-448px-V2_5, pixel shuffle 0.5,
    Qwen2.5-7B.

    Not checked against the hub file here (no network): the LLM's ``vocab_size`` 151674 and
    ``max_position_embeddings`` 32768, and the default (unscaled) RoPE, are from memory; the tower's and
    the LLM's widths, depths and heads are InternViT-300M's and Qwen2.5-7B's; ``image_token_id`` 151667
    is ``<IMG_CONTEXT>`` (transformers' conversion script sets it for every Qwen2-based InternVL).
    """
    from transformers import InternVLConfig

    return InternVLConfig(
        vision_config={
            "model_type": "internvl_vision",
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 448,
            "patch_size": 14,
            "attention_bias": True,
            "use_qk_norm": False,
            "norm_type": "layer_norm",
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
        },
        text_config={"model_type": "qwen2", **_llava_qwen2_7b_text(), "vocab_size": 151674},
        image_token_id=151667,
        image_seq_length=256,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


def tiny_internvl3_config(num_layers: int = 4, image_size: int = 32, patch_size: int = 4) -> Any:
    """A tiny InternVL3 for tests and CPU smoke runs: 8 x 8 patches a frame, 4 x 4 tokens after the
    pixel shuffle (random weights, well under 1M parameters)."""
    from transformers import InternVLConfig

    return InternVLConfig(
        vision_config={
            "model_type": "internvl_vision",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
            "attention_bias": True,
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
            "tie_word_embeddings": False,
            "bos_token_id": None,
            "eos_token_id": None,
        },
        image_token_id=299,  # <img> 297 and </img> 298 just below it, as in InternVL3's tokenizer
        image_seq_length=(image_size // patch_size // 2) ** 2,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


# 72B shapes
def llava_onevision_72b_config() -> Any:
    """LLaVA-OneVision-72B's shape (lmms-lab/llava-onevision-qwen2-72b-ov, HF port): the 7B's SigLIP-so400m
    tower and projector on Qwen2-72B-Instruct (hidden 8192, MLP 29568, 80 layers, 64 heads, 8 KV heads,
    vocabulary 152064, as Qwen2-72B-Instruct's config.json gives them; the port's own vocabulary size was
    not checked here, no network)."""
    from transformers import LlavaOnevisionConfig

    text = {
        **_llava_qwen2_7b_text(),
        "hidden_size": 8192,
        "intermediate_size": 29568,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
    }
    return LlavaOnevisionConfig(
        vision_config={"model_type": "siglip_vision_model", **_siglip_so400m()},
        text_config={"model_type": "qwen2", **text},
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        video_token_id=151647,
        image_token_id=151646,
    )


def qwen2_5_vl_72b_config() -> Any:
    """Qwen2.5-VL-72B-Instruct's shape: the 7B's tower (vision MLP 3456, merged into 8192) on a Qwen2.5-72B
    text model (hidden 8192, MLP 29568, 80 layers, 64 heads, 8 KV heads, vocabulary 152064).

    Not checked against the hub file here (no network): the vision ``intermediate_size`` 3456 and
    ``max_position_embeddings`` 128000 are from memory.
    """
    from transformers import Qwen2_5_VLConfig

    text = {
        **_qwen2_7b_text(128000),
        "hidden_size": 8192,
        "intermediate_size": 29568,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
    }
    return Qwen2_5_VLConfig(
        text_config={"model_type": "qwen2_5_vl_text", **text},
        vision_config=_qwen2_5_vl_vision(intermediate_size=3456, out_hidden_size=8192),
        tie_word_embeddings=False,
        **_QWEN_TOKENS,
    )
