"""Each strategy's pruning stages alone (no LLM), at a real model's shape, with synthetic features.

    python scripts/selection-overhead.py [--strategies divprune holitom ...] [--frames 32] [--keep 0.3]
        [--device cuda] [--prefill-ms 35] [--repeats 5] [--json out.json]

The token state is LLaVA-OneVision-7B's (``--shape``): 14 text tokens, ``frames x 196`` visual tokens
of hidden size 3584, the newline token, 50 text tokens; the features are scenes of 8 frames (a smooth
base per scene, a drifting part and noise) so that temporal methods meet static and dynamic tokens.
The vision attention (``received``, ``keys``) is synthetic; a ``layer`` stage's attention rows and keys
come from a random q/k projection of the state it sees (what the layer's own projections cost), with
no decoder layer run between stages. Each strategy is budgeted at layer-average ``--keep`` exactly as
``Session`` does; its stages run in plan order (a ``reindex`` stage re-numbers positions after it).

Per strategy and stage: the median milliseconds of ``--repeats`` runs after ``--warmup`` (CUDA events on
a GPU, a monotonic clock on the CPU), and the host synchronisations one run makes: on CUDA the
warnings of ``torch.cuda.set_sync_debug_mode("warn")``; on the CPU the calls that would synchronise on
a GPU (``item``, ``tolist``, ``bool``/``int``/``float`` of a tensor, ``nonzero``, ``unique``,
``bincount``, ``repeat_interleave`` by a tensor, indexing with a boolean mask, reading a tensor as an
index, ``torch.tensor``/``as_tensor`` of host values with a ``device``, a blocking copy); and the ATen operators one run dispatches (about one kernel launch each on CUDA: what a stage
costs when the GPU waits for the host). ``--prefill-ms`` (the pruned model's LM prefill, e.g.
``lm_prefill_ms`` from ``prune-bench speed``) adds the overhead column: stage time / prefill.

Not included: the vision tower's attention a stage asks for (computed lazily by the adapter, counted
in a real run's stage time) and the decoder layer's q/k projections beyond the random ones here.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import median
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from prune_bench.adapters.layout import video_layout
from prune_bench.core.attention import attention_rows
from prune_bench.core.compose import build_strategy
from prune_bench.core.context import StageContext, VisionAttention
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PRE_LLM, PruningPlan, Stage
from prune_bench.core.state import TokenState
from prune_bench.core.strategy import ModelInfo
from prune_bench.core.timing import Clock


@dataclass(frozen=True)
class Shape:
    num_layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    grid: int  # pooled tokens per frame side
    vision_head_dim: int
    family: str = "llava_onevision"
    text_before: int = 14
    text_after: int = 50


SHAPES = {
    "llava-onevision-7b": Shape(28, 3584, 28, 4, 128, 14, 72),
    "llava-onevision-0.5b": Shape(24, 896, 14, 2, 64, 14, 72),
}


# ------------------------------------------------------------------------------------- inputs
def synthetic_state(shape: Shape, frames: int, device: torch.device, dtype: torch.dtype) -> TokenState:
    g = torch.Generator().manual_seed(0)
    p, d = shape.grid**2, shape.hidden
    scenes = -(-frames // 8)
    base = torch.randn(scenes, p, d, generator=g).repeat_interleave(8, dim=0)[:frames]
    drift = torch.randn(frames, p, d, generator=g).cumsum(0) / math.sqrt(frames)
    moving = torch.zeros(frames, p, 1)
    for t in range(frames):  # a square of dynamic tokens moving across each frame
        moving[t, (t * 3) % p : (t * 3) % p + 12] = 3.0
    video = base + 0.3 * drift * (1 + moving) + 0.1 * torch.randn(frames, p, d, generator=g)
    n_video = frames * p + 1  # and the newline token
    n = shape.text_before + n_video + shape.text_after
    hidden = torch.randn(n, d, generator=g)
    hidden[shape.text_before : shape.text_before + frames * p] = video.reshape(-1, d)
    slots = torch.arange(shape.text_before, shape.text_before + n_video)
    hidden = hidden.to(device=device, dtype=dtype)
    return video_layout(hidden, slots.to(device), (shape.grid, shape.grid), newline=True)


def synthetic_vision(shape: Shape, frames: int, device: torch.device) -> VisionAttention:
    g = torch.Generator().manual_seed(1)
    p = shape.grid**2
    received = torch.softmax(torch.randn(frames, p, generator=g) * 2, dim=-1)
    keys = torch.randn(frames, p, shape.vision_head_dim, generator=g)
    return VisionAttention(received=received.to(device), keys=keys.to(device))


class RandomLayer:
    """A layer's q/k projections with random weights: the attention rows and keys a stage asks for."""

    def __init__(self, shape: Shape, device: torch.device, dtype: torch.dtype) -> None:
        g = torch.Generator().manual_seed(2)
        scale = shape.hidden**-0.5
        self.shape = shape
        self.wq = (torch.randn(shape.hidden, shape.heads * shape.head_dim, generator=g) * scale).to(
            device, dtype
        )
        self.wk = (torch.randn(shape.hidden, shape.kv_heads * shape.head_dim, generator=g) * scale).to(
            device, dtype
        )

    def keys(self, state: TokenState) -> torch.Tensor:
        s = self.shape
        return (state.hidden @ self.wk).view(len(state), s.kv_heads, s.head_dim).transpose(0, 1)

    def rows(self, state: TokenState, num_queries: int) -> torch.Tensor:
        s = self.shape
        n = len(state)
        q = (state.hidden[n - num_queries :] @ self.wq).view(num_queries, s.heads, s.head_dim).transpose(0, 1)
        qi = torch.arange(n - num_queries, n, device=state.device)
        return attention_rows(q, self.keys(state), qi, s.head_dim**-0.5)


# ---------------------------------------------------------------------------------- host syncs
#: Tensor methods that read a value back to the host (on CUDA each waits for the GPU).
_READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "unique")


def _to_a_device(data: Any, *args: Any, **kwargs: Any) -> bool:
    return kwargs.get("device") is not None and not isinstance(data, torch.Tensor)


@contextmanager
def count_host_reads() -> Iterator[Counter[str]]:
    """Count, by name, the calls inside the block that synchronise the host with a GPU (see the module
    docstring); for the CPU, where ``torch.cuda.set_sync_debug_mode`` sees nothing."""
    counts: Counter[str] = Counter()
    saved: dict[tuple[Any, str], Any] = {}

    def wrap(owner: Any, name: str, label: str, when: Callable[..., bool] | None = None) -> None:
        original = getattr(owner, name)
        saved[(owner, name)] = original

        def counted(*args: Any, **kwargs: Any) -> Any:
            if when is None or when(*args, **kwargs):
                counts[label] += 1
            return original(*args, **kwargs)

        setattr(owner, name, counted)

    def bool_index(_self: Any, index: Any, *rest: Any) -> bool:
        items = index if isinstance(index, tuple) else (index,)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)

    def bool_index_tensor_value(_self: Any, index: Any, value: Any) -> bool:
        return bool_index(_self, index) and isinstance(value, torch.Tensor) and value.numel() > 1

    for name in _READS:
        wrap(torch.Tensor, name, name)
    wrap(torch, "nonzero", "nonzero")
    wrap(torch, "unique", "unique")
    wrap(torch, "masked_select", "masked_select")
    # host numbers copied to a device by a blocking copy, which waits for the stream on CUDA
    wrap(torch, "tensor", "host-to-device copy", _to_a_device)
    wrap(torch, "as_tensor", "host-to-device copy", _to_a_device)
    wrap(torch, "bincount", "bincount")  # CUDA sizes its output from the input's maximum
    wrap(torch.Tensor, "bincount", "bincount")
    # a tensor of repeats without output_size: CUDA reads the total back
    wrap(
        torch,
        "repeat_interleave",
        "repeat_interleave",
        lambda _x, r=None, *a, **k: isinstance(r, torch.Tensor) and "output_size" not in k,
    )
    wrap(torch.Tensor, "__getitem__", "bool-mask index", bool_index)
    wrap(torch.Tensor, "__setitem__", "bool-mask assign", bool_index_tensor_value)
    try:
        yield counts
    finally:
        for (owner, name), original in saved.items():
            setattr(owner, name, original)


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched (on CUDA about one kernel launch each, views aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def count_cuda_syncs() -> Iterator[Counter[str]]:
    """Count the synchronisations ``torch.cuda.set_sync_debug_mode("warn")`` reports inside the block."""
    counts: Counter[str] = Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield counts
        finally:
            torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        if "synchroniz" in str(w.message):
            counts["cuda sync"] += 1


# ------------------------------------------------------------------------------------- running
def stage_context(
    stage: Stage,
    layer: RandomLayer,
    memory: dict[str, Any],
    vision: VisionAttention,
    shape: Shape,
    generator: torch.Generator,
) -> StageContext:
    if stage.hook in PRE_LLM:
        return StageContext(
            hook=stage.hook,
            num_layers=shape.num_layers,
            generator=generator,
            memory=memory,
            _vision=lambda: vision,
        )
    return StageContext(
        hook="layer",
        num_layers=shape.num_layers,
        generator=generator,
        memory=memory,
        layer=stage.layer,
        _attention=layer.rows,
        _keys=layer.keys,
        _final_norm=lambda h: F.rms_norm(h, h.shape[-1:]),
    )


def run_plan(
    plan: PruningPlan,
    state: TokenState,
    layer: RandomLayer,
    vision: VisionAttention,
    shape: Shape,
    clock: Clock,
) -> TokenState:
    memory: dict[str, Any] = {}
    generator = torch.Generator(device=state.device).manual_seed(0)
    for stage in plan.stages:
        if stage.hook == "decode":
            continue
        with clock.measure(stage.name):
            new = stage.fn(state, stage_context(stage, layer, memory, vision, shape, generator))
        if not isinstance(new, TokenState):
            raise TypeError(f"stage {stage.name!r} returned {type(new).__name__}, not a TokenState")
        state = new
        if stage.position_policy == "reindex":
            state = state.reindexed()
    return state


def measure(
    name: str,
    args: argparse.Namespace,
    shape: Shape,
    device: torch.device,
    state: TokenState,
    vision: VisionAttention,
    layer: RandomLayer,
) -> dict[str, Any]:
    info = ModelInfo(
        num_layers=shape.num_layers,
        num_frames=args.frames,
        tokens_per_frame=shape.grid**2,
        hidden_size=shape.hidden,
        family=shape.family,
        capabilities=frozenset({"vision_attention"}),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # budget warnings: the retention is the strategy's business here
        strategy = build_strategy(name, args.keep, "layer-average", info, registry())
    plan = PruningPlan.of(strategy.stages(info), shape.num_layers)
    runs: list[dict[str, float]] = []
    out = state
    with torch.no_grad():
        for i in range(args.warmup + args.repeats):
            clock = Clock(device)
            out = run_plan(plan, state, layer, vision, shape, clock)
            if i >= args.warmup:
                runs.append(clock.totals_ms())
        counter = count_cuda_syncs() if device.type == "cuda" else count_host_reads()
        with counter as syncs:  # the host calls are what synchronise; the queue drains after
            run_plan(plan, state, layer, vision, shape, Clock(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        with _OpCounter() as ops:
            run_plan(plan, state, layer, vision, shape, Clock(device))
    stages = {k: median(r[k] for r in runs) for k in runs[0]}
    return {
        "strategy": name,
        "total_ms": sum(stages.values()),
        "stage_ms": stages,
        "host_syncs": sum(syncs.values()),
        "syncs_by_kind": dict(syncs),
        "aten_ops": ops.ops,
        "visual_after": out.num_visual,
        "visual_before": state.num_visual,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", nargs="+", default=None, help="default: every registered strategy")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llava-onevision-7b")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--keep", type=float, default=0.3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--dtype", default=None, help="hidden-state dtype (default: bfloat16 on CUDA, float32 on CPU)"
    )
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--prefill-ms", type=float, default=None, help="pruned LM prefill, for the overhead column"
    )
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    shape = SHAPES[args.shape]
    names = args.strategies or sorted(n for n in registry().strategies if n != "none")
    state = synthetic_state(shape, args.frames, device, dtype)
    vision = synthetic_vision(shape, args.frames, device)
    layer = RandomLayer(shape, device, dtype)
    rows = []
    print(
        f"{'strategy':<12} {'ms':>9} {'syncs':>6} {'ops':>6} {'overhead':>8}  visual  stages (ms)", flush=True
    )
    for name in names:
        row = measure(name, args, shape, device, state, vision, layer)
        rows.append(row)
        over = f"{row['total_ms'] / args.prefill_ms:8.1%}" if args.prefill_ms else f"{'':>8}"
        per_stage = ", ".join(f"{k.split('.', 1)[-1]} {v:.2f}" for k, v in row["stage_ms"].items())
        print(
            f"{name:<12} {row['total_ms']:9.2f} {row['host_syncs']:6d} {row['aten_ops']:6d} {over}  "
            f"{row['visual_before']}->{row['visual_after']}  {per_stage}",
            flush=True,
        )
    if args.json:
        meta = {
            "device": str(device),
            "dtype": str(dtype),
            "shape": args.shape,
            "frames": args.frames,
            "keep": args.keep,
            "torch": torch.__version__,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
