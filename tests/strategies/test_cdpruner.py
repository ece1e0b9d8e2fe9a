from __future__ import annotations

import itertools

import pytest
import torch

from prune_bench import StageContext, TokenKind, TokenState, budget_count
from prune_bench.core.stages import PruningPlan
from prune_bench.strategies.cdpruner import CDPruner, instruction_index, spread_budget

FRAMES, ROWS, COLS, DIM = 3, 2, 3, 32
BEFORE, AFTER = 3, 4  # text tokens before the video (system prompt) and after it (the instruction)


def hand_state(seed: int = 0) -> TokenState:
    """[3 text] [3 frames of 2x3 visual tokens] [1 newline] [4 text], random features."""
    g = torch.Generator().manual_seed(seed)
    per_frame = ROWS * COLS
    n_vis = FRAMES * per_frame
    n = BEFORE + n_vis + 1 + AFTER
    kind = torch.full((n,), int(TokenKind.TEXT), dtype=torch.int8)
    kind[BEFORE : BEFORE + n_vis] = int(TokenKind.VISUAL)
    kind[BEFORE + n_vis] = int(TokenKind.NEWLINE)
    frame = torch.full((n,), -1, dtype=torch.long)
    row, col = frame.clone(), frame.clone()
    slot = torch.arange(n_vis)
    frame[BEFORE : BEFORE + n_vis] = slot // per_frame
    row[BEFORE : BEFORE + n_vis] = (slot % per_frame) // COLS
    col[BEFORE : BEFORE + n_vis] = slot % COLS
    return TokenState.from_layout(torch.randn(n, DIM, generator=g), kind, frame, row, col)


def context() -> StageContext:
    return StageContext(hook="input", num_layers=4, generator=torch.Generator(), memory={})


def reference_relevance(state: TokenState, sign: str, theta: float | None) -> torch.Tensor:
    """The code's relevance, written out: -cos (or +cos) with every instruction embedding, averaged,
    min-max normalised with the +1e-6 offset, optionally exp(alpha r); float64."""
    vis = state.hidden[state.kind == TokenKind.VISUAL].double()
    text = state.hidden[-AFTER:].double()  # the text after the video, by construction
    cos = torch.stack([torch.nn.functional.cosine_similarity(vis, t[None], dim=-1) for t in text], dim=1)
    r = cos.mean(dim=1) * (-1.0 if sign == "negative" else 1.0)
    r = (r - r.min() + 1e-6) / (r.max() - r.min())
    if theta is not None:
        r = torch.exp(theta / (2 * (1 - theta)) * r)
    return r


def brute_force_greedy(kernel: torch.Tensor, k: int) -> list[int]:
    """Greedy MAP by definition: add the item that maximises det(L_S) each step (no fast update)."""
    picked: list[int] = []
    for _ in range(k):
        best, best_det = -1, -float("inf")
        for j in range(kernel.shape[0]):
            if j in picked:
                continue
            idx = torch.tensor([*picked, j])
            det = float(torch.linalg.det(kernel[idx][:, idx]))
            if det > best_det:
                best, best_det = j, det
        picked.append(best)
    return picked


def reference_budgets(n: int, groups: int, keep: float) -> list[int]:
    """round(n * keep) tokens spread over ``groups`` equal groups: floor(K (g + 1) / G) - floor(K g / G)."""
    total = max(1, round(n * keep))
    return [total * (g + 1) // groups - total * g // groups for g in range(groups)]


def reference_kept(state: TokenState, keep: float, scope: str, sign: str, theta: float | None) -> set[int]:
    """Sources of the visual tokens a conditional DPP greedy keeps, per frame or over the video."""
    vis = state.visual_index
    x = torch.nn.functional.normalize(state.hidden[vis].double(), dim=-1)
    r = reference_relevance(state, sign, theta)
    kernel = r[:, None] * (x @ x.T) * r[None, :]
    groups = state.frame[vis] if scope == "frame" else torch.zeros_like(vis)
    budgets = reference_budgets(vis.numel(), int(groups.max()) + 1, keep)
    kept: set[int] = set()
    for g in groups.unique():
        members = torch.nonzero(groups == g).flatten()
        picks = brute_force_greedy(kernel[members][:, members], budgets[int(g)])
        kept.update(int(state.source[vis[members[p]]]) for p in picks)
    return kept


@pytest.mark.parametrize(
    ("keep", "scope", "sign", "theta"),
    [
        (0.5, "frame", "negative", None),  # the defaults, 3 of 6 tokens a frame
        (0.34, "frame", "negative", None),  # 2 of 6
        (0.4, "frame", "negative", None),  # 7 of 18: 2, 2 and 3
        (0.5, "video", "negative", None),  # 9 of 18 in one DPP
        (0.5, "frame", "positive", None),
        (0.5, "frame", "negative", 0.5),
        (0.3, "video", "positive", 0.8),
    ],
)
def test_picks_equal_a_brute_force_conditional_dpp_greedy(keep, scope, sign, theta):
    for seed in range(3):
        state = hand_state(seed)
        strategy = CDPruner(keep=keep, scope=scope, relevance_sign=sign, theta=theta)
        out = strategy.select(state, context())
        vis_out = out.kind == TokenKind.VISUAL
        assert set(out.source[vis_out].tolist()) == reference_kept(state, keep, scope, sign, theta)
        # the budget: round(N * keep) in all, spread over the frames
        assert int(vis_out.sum()) == budget_count(FRAMES * ROWS * COLS, keep)
        if scope == "frame":
            counts = torch.bincount(out.frame[vis_out], minlength=FRAMES)
            assert counts.tolist() == reference_budgets(FRAMES * ROWS * COLS, FRAMES, keep)
        # text and newline tokens untouched: all there, same hidden states, same positions
        other_in, other_out = state.kind != TokenKind.VISUAL, ~vis_out
        assert torch.equal(out.source[other_out], state.source[other_in])
        assert torch.equal(out.hidden[other_out], state.hidden[other_in])
        assert torch.equal(out.position[other_out], state.position[other_in])
        # kept tokens stay in their original order
        assert torch.equal(out.source, out.source.sort().values)


def test_the_instruction_is_the_text_after_the_video():
    state = hand_state()
    n = len(state)
    assert instruction_index(state).tolist() == list(range(n - AFTER, n))
    assert instruction_index(state, "all_text").tolist() == [*range(BEFORE), *range(n - AFTER, n)]


def test_the_text_decides_the_first_pick():
    """At one token a video the first greedy pick is the highest quality r_i^2: with the code's negated
    cosine, the token least like the instruction; with ``positive``, the one most like it."""
    state = hand_state()
    vis = state.visual_index
    hidden = state.hidden.clone()
    text = hidden[-AFTER:].mean(dim=0)
    hidden[vis[4]] = text  # most like the instruction
    hidden[vis[11]] = -text  # least like it
    state = state.with_hidden(hidden)
    one = 1 / vis.numel()
    positive = CDPruner(keep=one, scope="video", relevance_sign="positive").select(state, context())
    negative = CDPruner(keep=one, scope="video").select(state, context())
    assert positive.source[positive.kind == TokenKind.VISUAL].tolist() == [int(state.source[vis[4]])]
    assert negative.source[negative.kind == TokenKind.VISUAL].tolist() == [int(state.source[vis[11]])]


def is_a_greedy_order(kernel: torch.Tensor, picks: list[int], tol: float = 1e-9) -> bool:
    """Whether ``picks``, in this order, is a greedy MAP sequence of ``kernel`` (ties within ``tol``)."""

    def det(items: list[int]) -> float:
        idx = torch.tensor(items)
        return float(torch.linalg.det(kernel[idx][:, idx]))

    for i, j in enumerate(picks):
        before = picks[:i]
        rest = [c for c in range(kernel.shape[0]) if c not in before]
        if det([*before, j]) < max(det([*before, c]) for c in rest) - tol:
            return False
    return True


def test_without_the_condition_the_kernel_is_the_similarity():
    """``L = S`` has a unit diagonal, so the first pick is a tie (float rounding decides it, in the code
    too): the kept set of each frame must be SOME greedy MAP sequence of the similarity kernel."""
    state = hand_state(1)
    out = CDPruner(keep=0.5, conditional=False).select(state, context())
    vis = state.visual_index
    x = torch.nn.functional.normalize(state.hidden[vis].double(), dim=-1)
    kernel = x @ x.T
    kept = set(out.source[out.kind == TokenKind.VISUAL].tolist())
    for f in range(FRAMES):
        members = torch.arange(f * ROWS * COLS, (f + 1) * ROWS * COLS)
        picks = [p for p in range(members.numel()) if int(state.source[vis[members[p]]]) in kept]
        assert len(picks) == 3
        sub = kernel[members][:, members]
        assert any(is_a_greedy_order(sub, list(order)) for order in itertools.permutations(picks))


def test_an_exhausted_kernel_still_keeps_its_budget_of_distinct_tokens():
    """Features of rank 2 and a budget of 5 a frame: the code's greedy would take sqrt of non-positive
    residuals after two picks; the shared DPP keeps 5 distinct tokens per frame."""
    state = hand_state()
    vis = state.visual_index
    hidden = state.hidden.clone()
    basis = torch.randn(2, DIM, generator=torch.Generator().manual_seed(5))
    coeff = torch.randn(vis.numel(), 2, generator=torch.Generator().manual_seed(6))
    hidden[vis] = coeff @ basis
    state = state.with_hidden(hidden)
    out = CDPruner(keep=5 / 6).select(state, context())
    vis_out = out.kind == TokenKind.VISUAL
    assert torch.bincount(out.frame[vis_out]).tolist() == [5] * FRAMES
    assert out.source.unique().numel() == len(out)


def test_no_instruction_tokens_means_a_similarity_only_dpp():
    state = hand_state(2)
    keep = state.kind != TokenKind.TEXT
    keep[:BEFORE] = True  # drop only the text after the video
    state = state.keep_mask(keep)
    assert instruction_index(state).numel() == 0
    plain = CDPruner(keep=0.5, conditional=False).select(state, context())
    assert torch.equal(CDPruner(keep=0.5).select(state, context()).source, plain.source)


def test_keep_one_keeps_everything_without_running_the_dpp():
    state = hand_state()
    assert CDPruner(keep=1.0).select(state, context()) is state


@pytest.mark.parametrize("unit", ["input", "layer-average", "flops"])
def test_on_the_tiny_model_budget_text_and_positions(tiny_adapter, tiny_sample, unit):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    strategy = CDPruner.for_budget(0.25, unit, info)
    assert strategy.config.keep == 0.25
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    result = tiny_adapter.run(sample, plan)
    n = info.num_frames * info.tokens_per_frame
    assert result.input_retention == pytest.approx(budget_count(n, 0.25) / n)
    assert result.layer_average_retention == pytest.approx(result.input_retention)
    pre = tiny_adapter.runner.prefill(sample.state, plan)
    full = sample.state
    assert torch.equal(
        pre.state.source[pre.state.kind != TokenKind.VISUAL], full.source[full.kind != TokenKind.VISUAL]
    )
    kept_frames = pre.state.frame[pre.state.kind == TokenKind.VISUAL]
    assert torch.bincount(kept_frames).tolist() == reference_budgets(n, info.num_frames, 0.25)
    assert torch.equal(pre.state.position, torch.arange(len(pre.state)))  # re-indexed, as LLaVA splices
    again = tiny_adapter.runner.prefill(sample.state, plan)
    assert torch.equal(again.state.source, pre.state.source)


def test_original_positions_are_kept_on_request(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    strategy = CDPruner.for_budget(0.25, "input", info, position_policy="keep")
    pre = tiny_adapter.runner.prefill(sample.state, PruningPlan.of(strategy.stages(info), info.num_layers))
    full = sample.state
    assert torch.equal(pre.state.position, full.position[..., pre.state.source])


def test_the_budget_is_spread_over_the_frames():
    sizes = torch.tensor([16, 16, 16, 16, 16])
    for total in range(81):
        budgets = spread_budget(sizes, total)
        assert int(budgets.sum()) == total
        assert bool((budgets <= sizes).all()) and int(budgets.max() - budgets.min()) <= 1
    uneven = torch.tensor([3, 10, 1, 6])
    for total in range(21):
        budgets = spread_budget(uneven, total)
        assert int(budgets.sum()) == total and bool((budgets <= uneven).all()) and bool((budgets >= 0).all())


def test_fewer_tokens_than_frames_still_meets_the_budget():
    state = hand_state()
    out = CDPruner(keep=2 / 18).select(state, context())  # 2 tokens for 3 frames
    vis_out = out.kind == TokenKind.VISUAL
    assert int(vis_out.sum()) == 2
    assert torch.bincount(out.frame[vis_out], minlength=FRAMES).tolist() == reference_budgets(
        18, FRAMES, 2 / 18
    )


def test_brute_force_reference_is_the_greedy_by_determinants():
    """The reference itself: on a diagonal kernel greedy MAP takes the largest entries in order."""
    kernel = torch.diag(torch.tensor([0.3, 0.9, 0.1, 0.5], dtype=torch.float64))
    assert brute_force_greedy(kernel, 3) == [1, 3, 0]
    assert brute_force_greedy(kernel, 4) == [1, 3, 0, 2]
