"""Numbers the host already has, put on the device without a host sync.

``torch.tensor(values, device="cuda")`` copies from pageable memory with a blocking copy, which waits
for everything queued on the stream first (a host sync, as ``torch.cuda.set_sync_debug_mode`` reports):
mid-stage that leaves the GPU idle while the host catches up. A small pinned buffer copied with
``non_blocking=True`` queues behind the work instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def host_to_device(
    values: Sequence[int] | Sequence[float], device: torch.device, dtype: torch.dtype = torch.long
) -> torch.Tensor:
    """``torch.tensor(values, dtype=dtype)`` on ``device``, queued on its stream (no sync) on CUDA."""
    out = torch.tensor(values, dtype=dtype)
    if device.type == "cuda":
        return out.pin_memory().to(device, non_blocking=True)
    return out.to(device)
