"""The Triton Gram kernel (HieraVid's DPP kernel on GPUs with TF32) equals float32 ``x @ x^T``.

Runs on a CUDA device, or on the CPU under Triton's interpreter:
``TRITON_INTERPRET=1 python -m pytest tests/gpu/test_gram.py`` (needs ``pip install triton``).
"""

from __future__ import annotations

import pytest
import torch
from triton_marks import DEVICE, TRITON_OR_INTERPRETER

pytestmark = TRITON_OR_INTERPRETER


@pytest.mark.parametrize(
    ("g", "n", "d"), [(1, 5, 7), (3, 130, 70), (2, 300, 3584) if DEVICE == "cuda" else (2, 257, 96)]
)
def test_gram_kernel_equals_float32_matmul(g: int, n: int, d: int) -> None:
    from prune_bench.kernels.gram import gram_triton

    gen = torch.Generator(device=DEVICE).manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(g, n, d, device=DEVICE, generator=gen), dim=-1)
    x = x * torch.rand(g, n, 1, device=DEVICE, generator=gen)
    reference = (x.double() @ x.double().transpose(1, 2)).float()
    torch.testing.assert_close(gram_triton(x), reference, atol=2e-6, rtol=1e-5)


@pytest.mark.skipif(DEVICE == "cpu", reason="gram() takes the Triton kernel on CUDA only")
@pytest.mark.filterwarnings("error::RuntimeWarning")  # a fallback to torch.matmul would hide a failure
def test_gram_takes_the_kernel_on_cuda() -> None:
    from prune_bench import kernels
    from prune_bench.kernels.gram import gram_triton

    x = torch.randn(2, 200, 64, device=DEVICE)
    with kernels.record_paths() as paths:
        product = kernels.gram_matrix(x)
    assert paths == {"gram": "triton"}
    torch.testing.assert_close(product, gram_triton(x))
