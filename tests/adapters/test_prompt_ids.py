"""The prompt's token ids, shared by the adapters (``Adapter.prompt_ids``)."""

from __future__ import annotations

import pytest
import torch

from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
from prune_bench.adapters.qwen2_vl import Qwen2VLAdapter
from prune_bench.errors import UserError


@pytest.mark.parametrize("adapter_name", ["llava", "qwen"])
def test_encoding_a_question_without_a_tokenizer_is_one_readable_error(adapter_name: str) -> None:
    if adapter_name == "llava":
        adapter = LlavaOnevisionAdapter.from_config(
            LlavaOnevisionAdapter.architectures["tiny-llava-onevision"]()
        )
    else:
        adapter = Qwen2VLAdapter.from_config(
            Qwen2VLAdapter.architectures["tiny-qwen2-vl"](), frame_size=(32, 32)
        )
    frames = torch.zeros(4, 32, 32, 3, dtype=torch.uint8)
    with pytest.raises(UserError, match="no tokenizer"):
        adapter.encode(frames, "what?", ["a", "b"], capture_vision=False)
