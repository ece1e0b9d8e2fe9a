"""What is InternVL3's own, against the unmodified Hugging Face model (tiny random configs, CPU): the
video prompt layout (frames as image entries, ``FrameN:`` labels and ``<img>`` markers as text), the
prompt ids against the processor's layout tokenized whole, the pixel-shuffle pooling, the captured
vision attention against the tower's eager attention, the 8B shape and the input errors. The HF
logits, drop == mask, positions, caches and attention rows are the adapter contract's
(tests/adapters/test_adapter_contract.py)."""

from __future__ import annotations

import pytest
import torch

from prune_bench.adapters.internvl import (
    INTERNVL_PROMPT_FORMAT,
    InternVLAdapter,
    internvl3_8b_config,
    internvl_prompt_format,
    tiny_internvl3_config,
)
from prune_bench.adapters.prompt import PromptFormat
from prune_bench.core.plugins import registry
from prune_bench.core.state import TokenKind
from prune_bench.errors import UserError

FRAMES = 12  # two-digit frame labels from the tenth frame on


@pytest.fixture(scope="module")
def adapter() -> InternVLAdapter:
    return InternVLAdapter.tiny(num_layers=2)


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (FRAMES, 32, 32, 3), generator=g, dtype=torch.uint8)


def byte_level_tokenizer() -> object:
    """A small byte-level BPE tokenizer with Qwen2's pre-tokenizer split and InternVL's special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    qwen_split = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
        r"\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(qwen_split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    corpus = ["Frame1: Frame12: system user assistant Answer with the option's letter directly."] * 4
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    specials = ["<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>"]
    fast.add_special_tokens({"additional_special_tokens": specials})
    return fast


def test_frames_are_image_entries_with_labels_and_markers_as_text(
    adapter: InternVLAdapter, frames: torch.Tensor
) -> None:
    tpf = adapter.tokens_per_frame
    assert (tpf, adapter.token_grid) == (16, 4)
    span = adapter.video_span(adapter.video_token_count(FRAMES))
    ids = [3, 4, *span, 5, 6]
    sample = adapter.encode_ids(ids, adapter.pixels(frames), None, capture_vision=False)
    st = sample.state
    assert (st.num_visual, st.num_frames, st.frame_grid) == (FRAMES * tpf, FRAMES, (4, 4))
    visual = torch.nonzero(st.kind == TokenKind.VISUAL).flatten()
    assert torch.equal(torch.tensor(ids)[visual], torch.full((FRAMES * tpf,), adapter.video_token_id))
    start, end = adapter.image_markers
    assert (start, end) == (297, 298)
    for t in range(FRAMES):
        at = visual[st.frame[visual] == t]
        assert torch.equal(at, torch.arange(int(at[0]), int(at[0]) + tpf))  # one contiguous image entry
        label = adapter.frame_label(t)
        before = ids[int(at[0]) - len(label) - 1 : int(at[0])]
        assert before == [*label, start] and ids[int(at[-1]) + 1] == end
        assert (st.kind[int(at[0]) - len(label) - 1 : int(at[0])] == TokenKind.TEXT).all()
        assert torch.equal(st.row[at], torch.arange(tpf) // 4) and torch.equal(
            st.col[at], torch.arange(tpf) % 4
        )
    # stand-ins without a tokenizer: "\n", "Frame", the digits, ":", " " (Qwen2's byte-level ids but "Frame")
    assert adapter.frame_label(0) == [37, 16, 25, 220]
    assert adapter.frame_label(11) == [198, 37, 16, 17, 25, 220]
    assert int((st.kind == TokenKind.TEXT).sum()) == len(ids) - FRAMES * tpf
    assert torch.equal(st.position, torch.arange(len(ids)))


def test_prompt_ids_are_the_processors_video_layout_tokenized_whole() -> None:
    tok = byte_level_tokenizer()
    config = tiny_internvl3_config(num_layers=2)
    config.text_config.vocab_size = len(tok)  # type: ignore[arg-type]
    config.image_token_id = tok.convert_tokens_to_ids("<IMG_CONTEXT>")  # type: ignore[attr-defined]
    cpu = InternVLAdapter.from_config(config)
    adapter = InternVLAdapter(cpu.model, tok)
    assert adapter.image_markers == tuple(tok.convert_tokens_to_ids(["<img>", "</img>"]))  # type: ignore[attr-defined]
    question, options = "What is the man doing?", ["running", "sitting"]
    span = adapter.video_span(adapter.video_token_count(FRAMES))
    ids, answer_ids = adapter.prompt_ids(question, options, span)
    # InternVLProcessor.replace_video_token's text, in the official internvl2_5 conversation
    entry = "<img>" + "<IMG_CONTEXT>" * adapter.tokens_per_frame + "</img>"
    video = "\n".join(f"Frame{i + 1}: {entry}" for i in range(FRAMES))
    before, after = INTERNVL_PROMPT_FORMAT.around_video(question, options)
    whole = tok(before + video + after, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    assert ids == whole
    assert before.startswith("<|im_start|>system\n") and before.endswith("<|im_start|>user\n")
    assert after.startswith("\nWhat is the man doing?\nA. running\nB. sitting\n")
    assert answer_ids == [
        tok("A", add_special_tokens=False)["input_ids"][0],
        tok("B", add_special_tokens=False)["input_ids"][0],
    ]  # type: ignore[operator]


def test_pooling_averages_the_patches_the_pixel_shuffle_merges(adapter: InternVLAdapter) -> None:
    g = adapter.patch_grid
    index = torch.arange(g * g, dtype=torch.float32).view(1, g, g, 1)
    shuffled = adapter._pixel_shuffle(index, scale_factor=0.5).reshape(1, adapter.tokens_per_frame, 4)
    pooled = adapter._pool_scores(index.view(1, g * g, 1))[..., 0]
    torch.testing.assert_close(pooled, shuffled.mean(-1))  # the same four patches in each token
    assert sorted(shuffled[0, 0].tolist()) == [0.0, 1.0, float(g), float(g + 1)]


def test_vision_attention_equals_the_towers_eager_attention(
    adapter: InternVLAdapter, frames: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixels = adapter.pixels(frames)
    video = adapter.encode_video(pixels, capture_vision=True)
    assert video.vision is not None
    va = video.vision()
    assert va.received.shape == (FRAMES, 16) and va.keys.shape[:2] == (FRAMES, 16)
    tower = adapter.vision_tower
    keys: list[torch.Tensor] = []
    last = tower.encoder.layer[-1].attention
    handle = last.k_proj.register_forward_hook(lambda m, i, o: keys.append(o.detach()))
    monkeypatch.setattr(tower.config, "_attn_implementation", "eager")
    try:
        with torch.no_grad():
            out = tower(pixel_values=pixels, output_attentions=True)
    finally:
        handle.remove()
    attn = out.attentions[-1].float()  # [T, heads, 1 + P, 1 + P], the CLS token first
    received = attn.mean(dim=(1, 2))[:, 1:]
    heads = int(last.num_heads)
    k = keys[0].float().view(FRAMES, -1, heads, keys[0].shape[-1] // heads).mean(dim=2)[:, 1:]
    h = adapter.token_grid
    pool = lambda x: x.view(FRAMES, h, 2, h, 2, -1).mean(dim=(2, 4)).reshape(FRAMES, h * h, -1)  # noqa: E731
    torch.testing.assert_close(va.received, pool(received[..., None])[..., 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(va.keys, pool(k), atol=1e-6, rtol=1e-5)
    # every query's softmax sums to one over 1 + P keys; the patches receive all but the CLS share
    assert float(va.received.sum(-1).max()) <= 1.0 / 4 + 1e-6


def test_the_8b_architecture_has_internvl3_8bs_shape() -> None:
    assert registry().adapters["internvl"] is InternVLAdapter
    assert set(InternVLAdapter.architectures) == {"internvl3-8b", "tiny-internvl3"}
    assert set(InternVLAdapter.tiny_architectures) == {"tiny-internvl3"}
    cfg = internvl3_8b_config()
    assert InternVLAdapter.handles(cfg)
    t, v = cfg.text_config, cfg.vision_config
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads) == (
        3584,
        28,
        28,
        4,
    )
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, tuple(v.image_size)) == (
        1024,
        24,
        16,
        (448, 448),
    )
    assert (cfg.image_token_id, cfg.downsample_ratio, cfg.image_seq_length) == (151667, 0.5, 256)
    big = InternVLAdapter.from_config(cfg, device="meta")
    info = big.model_info(32)
    assert (info.tokens_per_frame, info.num_layers, info.hidden_size) == (256, 28, 3584)
    assert big.image_markers == (151665, 151666) and big.frame_size == (448, 448)
    span = big.video_span(big.video_token_count(32))
    assert span.count(151667) == 32 * 256 and span.count(151665) == span.count(151666) == 32


def test_unsupported_configs_and_spans_are_one_line_errors(adapter: InternVLAdapter) -> None:
    with pytest.raises(UserError, match="not whole frames of 16"):
        adapter.video_span(17)
    config = tiny_internvl3_config(num_layers=1)
    config.vision_feature_select_strategy = "full"
    with pytest.raises(UserError, match="must be 'default'"):
        InternVLAdapter.from_config(config)


def test_a_checkpoint_directory_without_settings_gets_internvls_template_and_statistics(tmp_path) -> None:
    fmt = internvl_prompt_format(PromptFormat.from_model_dir(tmp_path))
    assert fmt == INTERNVL_PROMPT_FORMAT
    assert fmt.with_benchmark_prompt() is not None  # benchmark prompts fit its user turn
    (tmp_path / "preprocessor_config.json").write_text(
        '{"image_mean": [0.1, 0.2, 0.3], "image_std": [1, 1, 1]}'
    )
    assert internvl_prompt_format(PromptFormat.from_model_dir(tmp_path)).pixel_mean == (0.1, 0.2, 0.3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.filterwarnings("ignore::prune_bench.core.strategy.BudgetWarning")
def test_internvl3_8b_on_cuda_keeps_hf_logits_at_keep_one_and_runs_visionzip() -> None:
    from prune_bench.contract import build_session

    big = InternVLAdapter.from_config(internvl3_8b_config(), device="cuda", dtype=torch.bfloat16)
    sample = big.encode_synthetic(8, 64, capture_vision=True)
    state = sample.state
    with torch.no_grad():
        hf = big.model.model.language_model(inputs_embeds=state.hidden[None]).last_hidden_state
        expected = big.model.lm_head(hf[:, -1])[0].float()
    none, _ = build_session(big, "none", 1.0)
    pre = big.prefill(sample, none.plan(8))
    torch.testing.assert_close(pre.logits.float(), expected, atol=0.15, rtol=0.05)
    visionzip, _ = build_session(big, "visionzip", 0.3)
    result = visionzip.answer(sample)
    assert result.input_retention < 0.5


def test_a_saved_checkpoint_loads_with_its_tokenizer_and_answers(tmp_path, frames: torch.Tensor) -> None:
    from prune_bench.adapters.loading import load_adapter
    from prune_bench.contract import build_session

    tok = byte_level_tokenizer()
    config = tiny_internvl3_config(num_layers=2)
    config.text_config.vocab_size = len(tok)  # type: ignore[arg-type]
    config.image_token_id = tok.convert_tokens_to_ids("<IMG_CONTEXT>")  # type: ignore[attr-defined]
    InternVLAdapter.from_config(config).model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)  # type: ignore[attr-defined]
    adapter, _ = load_adapter(str(tmp_path), "cpu")
    assert isinstance(adapter, InternVLAdapter) and adapter.prompt_format == INTERNVL_PROMPT_FORMAT
    sample = adapter.encode(frames, "What is the man doing?", ["running", "sitting"], capture_vision=True)
    assert sample.state.num_visual == FRAMES * adapter.tokens_per_frame
    session, _ = build_session(adapter, "visionzip", 0.3)
    result = session.answer(sample)
    assert result.choice in (0, 1) and result.input_retention < 0.5
