"""runner/decode_reference.py and scripts/decode-reference.py: the HF static-cache step is a real decode
step (its logits are the HF model's own for the same prefix), and the script's CPU dry run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
from prune_bench.adapters.qwen2_vl import Qwen2VLAdapter
from prune_bench.runner.decode_reference import HFStaticDecode, step_matches_forward, time_hf_static_step

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "decode-reference.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("decode_reference_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["decode_reference_script"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["decode_reference_script"]


def uncached_logits(adapter, ref: HFStaticDecode, tokens: list[int]) -> torch.Tensor:
    """The HF model's own forward (no cache) over the reference's prefix followed by ``tokens``."""
    embed = adapter.lm.get_input_embeddings()
    embeds = torch.cat([ref.prefix, embed(torch.tensor([tokens]))], dim=1)
    n = embeds.shape[1]
    position = torch.arange(n)[None]
    position = position.expand(3, 1, n) if ref.m_rope else position
    out = adapter.lm(inputs_embeds=embeds, position_ids=position, use_cache=False)
    return adapter.model.lm_head(out.last_hidden_state[:, -1])


@pytest.mark.parametrize(("cls", "m_rope"), [(LlavaOnevisionAdapter, False), (Qwen2VLAdapter, True)])
@torch.no_grad()
def test_static_cache_steps_give_the_hf_forward_logits_of_the_same_prefix(cls, m_rope):
    adapter = cls.tiny(num_layers=2)
    ref = HFStaticDecode(adapter, 12, 15)
    assert ref.m_rope is m_rope
    ref.prefill()
    tokens = [5, 9, 2]
    for i, token in enumerate(tokens):  # each step writes the next cache entry at the next position
        ref.token.fill_(token)
        got = ref.step()
        torch.testing.assert_close(got, uncached_logits(adapter, ref, tokens[: i + 1]), rtol=1e-4, atol=1e-5)
    step, forward = step_matches_forward(adapter, 12)
    torch.testing.assert_close(step, forward, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_eager_timing_replays_from_a_fresh_prefill_and_graph_needs_cuda():
    adapter = LlavaOnevisionAdapter.tiny(num_layers=2)
    timing = time_hf_static_step(adapter, 10, 4, graph=False, warmup=3)
    assert len(timing.ms) == 4 and timing.median_ms > 0
    ref = HFStaticDecode(adapter, 10, 11)  # the first timed step is token 0 right after the prefill
    torch.testing.assert_close(timing.first_logits, uncached_logits(adapter, ref, [0]), rtol=1e-4, atol=1e-5)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            time_hf_static_step(adapter, 10, 4, graph=True)


def test_script_dry_run_on_cpu_writes_the_table_and_checks_the_reference(script, tmp_path):
    result = script.main(
        ["--arch", "tiny-llava-onevision", "--frames", "2", "--decode-tokens", "3", "--warmup", "0",
         "--repeats", "1", "--out", str(tmp_path)]
    )  # fmt: skip
    rows = {r["strategy"]: r for r in result["rows"]}
    assert list(rows) == ["none", "random"] and rows["random"]["keep"] == 0.3
    assert rows["none"]["kv_len"] > rows["random"]["kv_len"] > 0
    for row in rows.values():
        assert row["ours_ms_per_token"] > 0 and row["hf_eager_ms_per_step"] > 0
        assert row["step_vs_forward_max_abs"] <= 1e-4 * max(1.0, row["logits_max_abs"])
        if not torch.cuda.is_available():
            assert row["hf_graph_ms_per_step"] is None and row["ratio_ours_hf_graph"] is None
    saved = json.loads((tmp_path / "decode-reference.json").read_text())
    assert saved["rows"] == result["rows"] and saved["machine"]["dtype"] == "float32"
    table = (tmp_path / "decode-reference.md").read_text()
    assert "| tiny-llava-onevision | none | 1 | " in table and "HF static graph ms/step" in table
    assert saved["commit"] in table
