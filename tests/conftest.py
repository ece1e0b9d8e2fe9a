from __future__ import annotations

import pytest
import torch

from prune_bench.adapters.base import EncodedSample
from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter, tiny_llava_onevision_config


@pytest.fixture(scope="session")
def tiny_adapter() -> LlavaOnevisionAdapter:
    return LlavaOnevisionAdapter.from_config(tiny_llava_onevision_config(num_layers=4), seed=0)


@pytest.fixture(scope="session")
def tiny_sample(tiny_adapter: LlavaOnevisionAdapter) -> tuple[list[int], torch.Tensor, EncodedSample]:
    """A 6-frame random video with a short text prompt around it: (ids, pixels, encoded)."""
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (6, 32, 32, 3), generator=g, dtype=torch.uint8)
    n_video = tiny_adapter.video_token_count(6)
    vid = tiny_adapter.config.video_token_id
    ids = [5, 6, 7, 8] + [vid] * n_video + [9, 10, 11, 12, 13]
    pixels = tiny_adapter.pixels(frames)
    return ids, pixels, tiny_adapter.encode_ids(ids, pixels, [20, 21, 22, 23], capture_vision=True)
