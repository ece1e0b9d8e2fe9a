"""Micro-benchmarks: the selection work of every registered strategy, without the model.

Run with ``tox -e bench`` or ``python -m pytest benchmarks --benchmark-only --benchmark-enable``.
On CUDA the state has LLaVA-OneVision-7B's shape (32 frames of 14x14 tokens, hidden 3584, 28
heads); on a CPU a smaller one (8 frames, hidden 896) so the run stays short. Layer stages get
attention rows drawn at random and vision stages random tower attention, so what is timed is each
strategy's own scoring and selection (what ``pruning ms`` reports during real runs), stage after
stage in plan order, on the state each stage would see. Decode stages are not included.
"""

from __future__ import annotations

import pytest
import torch

from prune_bench.core.context import StageContext, VisionAttention
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import ModelInfo

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
FRAMES, GRID, HIDDEN, HEADS, LAYERS = (32, 14, 3584, 28, 28) if CUDA else (8, 14, 896, 14, 24)
TEXT_BEFORE, TEXT_AFTER = 14, 50


def video_state(seed: int = 0) -> TokenState:
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    p = GRID * GRID
    nv = FRAMES * p
    n = TEXT_BEFORE + nv + 1 + TEXT_AFTER
    # Scenes of 8 frames whose tokens drift slowly, so temporal methods see real redundancy.
    base = torch.randn(FRAMES // 8 + 1, p, HIDDEN, generator=g, device=DEVICE)
    frames = base.repeat_interleave(8, dim=0)[:FRAMES] + 0.3 * torch.randn(
        FRAMES, p, HIDDEN, generator=g, device=DEVICE
    )
    hidden = torch.randn(n, HIDDEN, generator=g, device=DEVICE)
    hidden[TEXT_BEFORE : TEXT_BEFORE + nv] = frames.reshape(nv, HIDDEN)
    kind = torch.full((n,), int(TokenKind.TEXT), dtype=torch.int8)
    frame = torch.full((n,), -1, dtype=torch.long)
    row, col = frame.clone(), frame.clone()
    vis = torch.arange(TEXT_BEFORE, TEXT_BEFORE + nv)
    kind[vis] = int(TokenKind.VISUAL)
    kind[TEXT_BEFORE + nv] = int(TokenKind.NEWLINE)
    local = torch.arange(nv)
    frame[vis], row[vis], col[vis] = local // p, (local % p) // GRID, local % GRID
    dtype = torch.bfloat16 if CUDA else torch.float32
    return TokenState.from_layout(hidden.to(dtype), kind, frame, row, col)


def run_prefill_stages(plan: PruningPlan, state: TokenState, vision: VisionAttention) -> TokenState:
    g = torch.Generator(device=DEVICE).manual_seed(0)
    memory: dict = {}

    def rows(st: TokenState, q: int) -> torch.Tensor:
        return torch.softmax(torch.randn(HEADS, q, len(st), device=DEVICE, generator=g), dim=-1)

    for stage in plan.stages:
        if stage.hook == "decode":
            continue
        ctx = StageContext(
            hook=stage.hook,
            num_layers=LAYERS,
            generator=g,
            memory=memory,
            layer=stage.layer,
            _attention=rows if stage.hook == "layer" else None,
            _vision=lambda: vision,
        )
        state = stage.fn(state, ctx)  # type: ignore[assignment]
    if CUDA:
        torch.cuda.synchronize()
    return state


@pytest.mark.filterwarnings("ignore::prune_bench.core.strategy.BudgetWarning")
@pytest.mark.parametrize("name", sorted(n for n in registry().strategies if n != "none"))
@pytest.mark.parametrize("keep", [0.1, 0.3])
def test_selection(benchmark, name: str, keep: float) -> None:
    info = ModelInfo(
        num_layers=LAYERS,
        num_frames=FRAMES,
        tokens_per_frame=GRID * GRID,
        hidden_size=HIDDEN,
        family="llava_onevision",
        capabilities=frozenset({"vision_attention"}),
    )
    plan = PruningPlan.of(
        registry().strategy(name).for_budget(keep, "layer-average", info).stages(info), LAYERS
    )
    state = video_state()
    g = torch.Generator(device=DEVICE).manual_seed(1)
    vision = VisionAttention(
        received=torch.rand(FRAMES, GRID * GRID, device=DEVICE, generator=g),
        keys=torch.randn(FRAMES, GRID * GRID, 72, device=DEVICE, generator=g),
    )
    benchmark.extra_info.update({"device": str(DEVICE), "frames": FRAMES, "hidden": HIDDEN})
    out = benchmark.pedantic(run_prefill_stages, args=(plan, state, vision), rounds=5, warmup_rounds=1)
    assert out.num_visual < state.num_visual


@pytest.mark.skipif(not CUDA, reason="the graph and Triton paths need a CUDA device")
@pytest.mark.parametrize("path", ["eager", "graph", "triton", "persistent"])
@pytest.mark.parametrize("keep", [0.1, 0.3])
def test_hieravid_selection_dpp_path(benchmark, monkeypatch, path: str, keep: float) -> None:
    """HieraVid's selection with each greedy-DPP implementation (``PRUNE_BENCH_DPP``)."""
    monkeypatch.setenv("PRUNE_BENCH_DPP", path)
    test_selection(benchmark, "hieravid", keep)


@pytest.mark.skipif(not CUDA, reason="the graph and Triton paths need a CUDA device")
@pytest.mark.parametrize("path", ["graph", "triton", "persistent"])
@pytest.mark.parametrize(("segments", "size", "picks"), [(1, 3136, 941), (4, 784, 470), (16, 196, 118)])
def test_greedy_dpp(benchmark, monkeypatch, path: str, segments: int, size: int, picks: int) -> None:
    """Greedy DPP alone on ``segments`` kernels of ``size`` items (hidden 3584), ``picks`` picks each:
    one segment of the whole video down to many short ones, at 32 frames of 196 tokens."""
    from prune_bench.strategies.common.dpp import greedy_dpp_map

    monkeypatch.setenv("PRUNE_BENCH_DPP", path)
    g = torch.Generator(device=DEVICE).manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(segments, size, HIDDEN, device=DEVICE, generator=g), dim=-1)
    r = torch.rand(segments, size, device=DEVICE, generator=g)
    kernel = r[:, :, None] * (x @ x.transpose(1, 2)) * r[:, None, :]
    sizes = torch.full((segments,), size, device=DEVICE)
    budgets = torch.full((segments,), picks, device=DEVICE)

    def run() -> torch.Tensor:
        out = greedy_dpp_map(kernel, sizes, budgets)
        torch.cuda.synchronize()
        return out

    benchmark.extra_info.update({"device": str(DEVICE), "segments": segments, "size": size, "picks": picks})
    out = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert out.sum().item() == segments * picks


@pytest.mark.skipif(not CUDA, reason="the graph and Triton paths need a CUDA device")
@pytest.mark.parametrize("path", ["eager", "graph", "triton"])
@pytest.mark.parametrize("keep", [0.1, 0.3])
def test_max_min_diversity(benchmark, monkeypatch, path: str, keep: float) -> None:
    """DivPrune's selection alone (``greedy_max_min_diversity``: the cosine distances, then the picks)
    on every visual token of the video (6,272 of hidden 3584 at 32 frames; keep 0.3: 1,882 picks), with
    each max-min implementation (``PRUNE_BENCH_MAXMIN``)."""
    from prune_bench.strategies.common.diversity import greedy_max_min_diversity

    monkeypatch.setenv("PRUNE_BENCH_MAXMIN", path)
    state = video_state()
    features = state.hidden[state.visual_index]
    k = int(round(keep * features.shape[0]))

    def run() -> torch.Tensor:
        out = greedy_max_min_diversity(features, k)
        torch.cuda.synchronize()
        return out

    benchmark.extra_info.update({"device": str(DEVICE), "tokens": features.shape[0], "picks": k})
    out = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert out.unique().numel() == k


@pytest.mark.skipif(not CUDA, reason="the Triton Gram kernel needs a CUDA device")
@pytest.mark.parametrize("impl", ["matmul", "triton"])
@pytest.mark.parametrize("size", [1500, 3064, 5608, 6272])
def test_gram(benchmark, impl: str, size: int) -> None:
    """HieraVid's DPP kernel ``x @ x^T`` (one segment of ``size`` tokens, hidden 3584), and DivPrune's
    cosine products at 32 frames (6,272 tokens): float32 ``torch.matmul`` against the Triton tf32x3
    kernel (``kernels/gram.py``)."""
    from prune_bench.kernels.gram import gram_triton

    g = torch.Generator(device=DEVICE).manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(1, size, HIDDEN, device=DEVICE, generator=g), dim=-1)

    def run() -> torch.Tensor:
        out = x @ x.transpose(1, 2) if impl == "matmul" else gram_triton(x)
        torch.cuda.synchronize()
        return out

    benchmark.extra_info.update({"device": str(DEVICE), "size": size, "impl": impl})
    out = benchmark.pedantic(run, rounds=10, warmup_rounds=2)
    assert out.shape == (1, size, size)
