"""The Triton max-min kernel (DivPrune's picks on CUDA) picks what the eager PyTorch loop picks.

Runs on a CUDA device, or on the CPU under Triton's interpreter:
``TRITON_INTERPRET=1 python -m pytest tests/gpu/test_maxmin_triton.py`` (needs ``pip install triton``).
Every comparison of paths hands them the same distance matrix: the pick loops are an argmax and a
minimum, exact operations, so their picks must be equal, ties included. How the Triton Gram product
(CUDA's distances) and float32 ``x @ x^T`` compare is the last test's question. The interpreter
computes ``tl.argmax`` with NumPy (always the first maximum), so only a CUDA run checks that the
compiled kernel breaks ties as the eager loop does (the tie tests below, on the GPU).
"""

from __future__ import annotations

import pytest
import torch
from triton_marks import DEVICE, TRITON_OR_INTERPRETER

from prune_bench import kernels
from prune_bench.kernels import selector
from prune_bench.strategies.common import diversity

pytestmark = TRITON_OR_INTERPRETER


def _features(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    return torch.randn(n, d, device=DEVICE, generator=g)


def _inputs(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance matrix with its diagonal -inf, first pick), as greedy_max_min_diversity makes them."""
    dist = diversity.cosine_distance_matrix(features)
    nearest = torch.topk(dist, 2, dim=0, largest=False).values[1]
    dist.diagonal().fill_(-torch.inf)
    return dist, torch.argmax(nearest, dim=0, keepdim=True)


def _picks(dist: torch.Tensor, first: torch.Tensor, k: int, path: str) -> list[int]:
    return diversity.max_min_impls(dist, first, k)[path]().tolist()


@pytest.mark.parametrize(
    ("n", "d", "k"),
    [
        (50, 16, 1),
        (50, 16, 2),
        (37, 8, 37),  # every token, n not a power of two
        (64, 8, 64),  # every token, n a power of two (no padding lanes)
        (300, 64, 120),
        (1000, 96, 333) if DEVICE == "cuda" else (513, 32, 170),
    ],
)
def test_kernel_picks_equal_eager_picks(n: int, d: int, k: int) -> None:
    dist, first = _inputs(_features(n, d, seed=n + k))
    fused = _picks(dist, first, k, "triton")
    assert fused == _picks(dist, first, k, "eager")
    assert len(set(fused)) == k


def test_duplicate_tokens_tie_as_the_eager_loop_does() -> None:
    # 90 tokens drawn from 12 distinct ones (and scaled copies, cosine 1 up to float error): once a
    # copy of each is picked every running minimum is 0 or about 0, and the rest is decided by ties
    g = torch.Generator(device=DEVICE).manual_seed(5)
    base = torch.randn(12, 16, device=DEVICE, generator=g)
    which = torch.randint(0, 12, (90,), device=DEVICE, generator=g)
    scale = torch.rand(90, 1, device=DEVICE, generator=g) + 0.5
    features = base[which] * torch.where(torch.arange(90, device=DEVICE)[:, None] % 3 == 0, scale, 1.0)
    dist, first = _inputs(features)
    for k in (12, 40, 90):
        fused = _picks(dist, first, k, "triton")
        assert fused == _picks(dist, first, k, "eager")
        assert len(set(fused)) == k


def test_exact_ties_take_the_first_maximum() -> None:
    # a distance matrix of small integers: nearly every pick is a tie among many tokens, so the picks
    # follow the tie rule (the first maximum, torch.argmax's) pick after pick
    g = torch.Generator(device=DEVICE).manual_seed(6)
    n = 77
    dist = torch.randint(0, 3, (n, n), device=DEVICE, generator=g).float()
    dist = torch.maximum(dist, dist.T)
    dist.diagonal().fill_(-torch.inf)
    first = torch.tensor([5], device=DEVICE)
    fused = _picks(dist, first, n, "triton")
    assert fused == _picks(dist, first, n, "eager")
    assert sorted(fused) == list(range(n))
    # the rule itself, for the second pick: the first token at the largest distance from token 5
    row = dist[5].tolist()
    assert fused[1] == row.index(max(row))


@pytest.mark.parametrize("k", [1, 2, 45, 61, 80])
def test_greedy_max_min_diversity_on_the_triton_path(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    features = _features(61, 24, seed=k)  # k past n keeps every token
    monkeypatch.setenv(selector.MAXMIN_ENV, "eager")
    with kernels.record_paths() as paths:
        eager = diversity.greedy_max_min_diversity(features, k)
    assert paths["maxmin"] == "eager"
    monkeypatch.setenv(selector.MAXMIN_ENV, "triton")
    assert selector.maxmin_path(torch.device(DEVICE), 61) == "triton"
    with kernels.record_paths() as paths:
        fused = diversity.greedy_max_min_diversity(features, k)
    assert paths["maxmin"] == "triton"
    assert fused.tolist() == eager.tolist()
    assert fused.dtype == torch.long and fused.device == features.device


def test_the_kernel_refuses_more_items_than_one_program_holds() -> None:
    from prune_bench.kernels import maxmin_triton

    assert maxmin_triton.fits(maxmin_triton.MAX_N) and not maxmin_triton.fits(maxmin_triton.MAX_N + 1)
    big = torch.empty(maxmin_triton.MAX_N + 1, 1, device=DEVICE).expand(-1, maxmin_triton.MAX_N + 1)
    with pytest.raises(ValueError, match="up to 16384"):
        maxmin_triton.max_min_picks(big, torch.zeros(2, dtype=torch.long, device=DEVICE), 2)


# ------------------------------------------------------------------------------------- CUDA only
CUDA_ONLY = pytest.mark.skipif(DEVICE == "cpu", reason="the 7B shape is too large for the interpreter")


def _seven_b_features(seed: int = 0) -> torch.Tensor:
    """6,272 tokens of hidden size 3,584 (LLaVA-OneVision-7B, 32 frames of 14 x 14), rounded to
    bfloat16 as the model's states are, sharing a mean direction as projected features do."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    mean = 2 * torch.randn(3584, device="cuda", generator=g)
    return (mean + torch.randn(6272, 3584, device="cuda", generator=g)).bfloat16().float()


@CUDA_ONLY
@pytest.mark.filterwarnings("error::RuntimeWarning")  # a fallback would hide a failure
def test_kernel_picks_equal_eager_picks_at_the_7b_shape() -> None:
    dist, first = _inputs(_seven_b_features())
    fused = _picks(dist, first, 1882, "triton")
    assert fused == _picks(dist, first, 1882, "eager")
    assert fused == _picks(dist, first, 1882, "graph")
    assert len(set(fused)) == 1882


@CUDA_ONLY
def test_cuda_distances_and_nearest_neighbours_at_the_7b_shape() -> None:
    # 1 - g in one pass rounds as negating and adding 1; two column minima give topk's second value
    features = _seven_b_features(seed=2)
    x = torch.nn.functional.normalize(features, dim=-1)
    gram = kernels.gram_matrix(x[None])[0]
    dist = diversity.cosine_distance_matrix(features)
    assert torch.equal(dist, gram.neg().add_(1.0).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0))
    nearest = torch.topk(dist, 2, dim=0, largest=False).values[1]
    assert torch.equal(diversity.second_smallest(dist), nearest)


@CUDA_ONLY
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_cuda_takes_the_kernels_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(selector.MAXMIN_ENV, raising=False)
    features = _features(3000, 256)
    with kernels.record_paths() as paths:
        picks = diversity.greedy_max_min_diversity(features, 900)
    assert paths == {"gram": "triton", "maxmin": "triton"}
    assert len(set(picks.tolist())) == 900


@CUDA_ONLY
def test_tf32x3_distances_pick_as_float32_matmul_up_to_near_ties() -> None:
    # the Triton Gram product (three TF32 products) and cuBLAS float32 differ by about 1e-6 at most, so the
    # two may part at a pick whose two best candidates are that close; until then they pick alike, and
    # the pick where they part must be such a near-tie (within 1e-5 in float64 distances)
    features = _seven_b_features(seed=1)
    dist, first = _inputs(features)
    x = torch.nn.functional.normalize(features, dim=-1)
    reference = (x @ x.T).neg_().add_(1.0)
    reference.diagonal().fill_(-torch.inf)
    a = _picks(dist, first, 1882, "triton")
    b = _picks(reference, first, 1882, "triton")
    parted = next((i for i, (p, q) in enumerate(zip(a, b, strict=True)) if p != q), None)
    if parted is not None:
        exact = 1 - x.double() @ x.double()[a[:parted]].T
        closest = exact.min(dim=1).values
        assert abs(float(closest[a[parted]] - closest[b[parted]])) < 1e-5, f"parted at pick {parted}"
