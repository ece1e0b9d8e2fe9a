"""Speed measurement at a real architecture's shape, with random weights (no download).

For every (strategy, keep) the same synthetic sample (random pixels, random text ids, the real
token counts) runs ``warmup`` times untimed, then ``repeats`` times; each figure is the median of
the repeats. CUDA events time the GPU work without extra synchronisation (``core.timing``).

Figures, all per sample:

* ``vision_ms``: vision tower + projector + prompt assembly (the same for every strategy);
* ``pruning_ms``: the sum of every stage's time (selection overhead, scoring included);
  ``stage_ms``: the same per stage, by stage name (where the overhead is spent);
* ``lm_prefill_ms``: the LLM prefill without the pruning stages (what pruning is meant to save);
* ``prefill_ms``: LLM prefill including the stages;
* ``ttft_ms``: ``vision_ms + prefill_ms`` (the first token is the argmax of the prefill logits);
* ``decode_ms_per_token``: greedy decode with the per-layer reduced KV cache;
* ``peak_mem_gib``: peak allocated memory during the run (summed over the GPUs of a model placed by
  ``--device-map``); ``kv_cache_mib``: the prompt's KV cache;
* ``speedup``: unpruned ``lm_prefill_ms`` / this ``lm_prefill_ms``; ``ideal_speedup``: the same
  ratio of exact LLM prefill FLOPs; ``efficiency`` = speedup / ideal_speedup;
* ``segments``: how many temporal segments or windows the strategy formed on this video (None for a
  strategy that forms none): the distinct ``TokenState.segment`` ids of the visual tokens after its
  pre-LLM stages, where HieraVid, FastVID, FlashVID, HoliTom and PruneVid record them, read from one
  extra untimed prefill (:func:`segments_formed`). Their per-segment work depends on it: a greedy DPP
  over one segment makes every pick in sequence.

The video is :mod:`prune_bench.runner.speed_input`'s: rendered scenes, noise or the user's file.

The Hugging Face reference (``hf_lm_prefill_ms``) is the HF language model's own forward
(``use_cache=True``, same SDPA backend, same embeddings) over the unpruned prompt, so the cost of
running our own layer loop is visible.

A model larger than one GPU (``speed --device-map auto``) is built with random weights directly on the
GPUs accelerate's balanced placement gives each module (adapters/placement.py); the timings then span
every GPU: the decoder loop hands its logits back to the first GPU, whose stream the events are
recorded on, so a prefill's end waits for the last GPU's work.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from statistics import median
from typing import Any

import torch

from prune_bench.adapters.base import Adapter, AnswerResult, EncodedSample, default_dtype
from prune_bench.core.flops import LMShape, prefill_flops
from prune_bench.core.stages import PruningPlan
from prune_bench.core.timing import Clock
from prune_bench.runner.speed_input import speed_sample
from prune_bench.session import Session


@dataclass
class SpeedRow:
    strategy: str
    keep: float
    frames: int
    visual_tokens: int
    retention_layer_average: float
    retention_input: float
    vision_ms: float
    pruning_ms: float
    lm_prefill_ms: float
    prefill_ms: float
    ttft_ms: float
    decode_ms_per_token: float
    peak_mem_gib: float
    kv_cache_mib: float
    flops_exact: float
    flops_paper: float
    speedup: float = 1.0
    ideal_speedup: float = 1.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    segments: int | None = None

    @property
    def efficiency(self) -> float:
        return self.speedup / self.ideal_speedup if self.ideal_speedup else float("nan")

    @property
    def overhead(self) -> float:
        """Pruning time as a fraction of the pruned model's LM prefill (stages excluded): the issue's
        "overhead / pruned prefill", which is not capped at 1 the way pruning / (prefill + pruning) is."""
        return self.pruning_ms / self.lm_prefill_ms if self.lm_prefill_ms else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "efficiency": self.efficiency, "overhead": self.overhead}


def rows_from_json(payload: dict[str, Any]) -> list[SpeedRow]:
    """The rows of a saved ``speed.json`` (derived columns are recomputed, not read)."""
    names = set(SpeedRow.__dataclass_fields__)
    return [SpeedRow(**{k: v for k, v in row.items() if k in names}) for row in payload["rows"]]


def model_gpus(adapter: Adapter) -> list[torch.device]:
    """The GPUs the model's weights are on: one, or several when ``--device-map`` spread it."""
    return list(dict.fromkeys(p.device for p in adapter.model.parameters() if p.device.type == "cuda"))


def random_adapter_on_device_map(
    adapter_cls: type[Adapter], config: Any, device_map: Any, dtype: torch.dtype | None, seed: int = 0
) -> Adapter:
    """``adapter_cls`` over its HF model at ``config``'s shape with random weights, each parameter made on
    the device ``device_map`` gives it (adapters/placement.py: a 72B model never exists in host memory)."""
    from transformers import AutoModelForImageTextToText

    from prune_bench.adapters.placement import random_model_on_device_map

    model_cls = AutoModelForImageTextToText._model_mapping[type(config)]
    dtype = default_dtype("cuda" if torch.cuda.is_available() else "cpu", dtype)
    model = random_model_on_device_map(model_cls, config, device_map, dtype, seed, "sdpa")
    return adapter_cls(model)  # type: ignore[call-arg]


def machine(adapter: Adapter) -> dict[str, str]:
    """What every figure was measured on."""
    dev = adapter.device
    gpus = model_gpus(adapter)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu")
    return {
        "device": f"{len(gpus)} x {name}" if len(gpus) > 1 else name,
        "dtype": str(adapter.model.dtype).removeprefix("torch."),
        "attention": str(getattr(adapter.config.text_config, "_attn_implementation", "sdpa")),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "cuda": str(torch.version.cuda),
        "host": platform.node(),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def kv_cache_bytes(shape: LMShape, result: AnswerResult, dtype: torch.dtype) -> int:
    per_token = 2 * shape.num_kv_heads * shape.head_dim * torch.empty((), dtype=dtype).element_size()
    return sum(c.attn_tokens for c in result.counts) * per_token


def segments_formed(session: Session, sample: EncodedSample) -> int | None:
    """Temporal segments (or windows) ``session``'s strategy formed on ``sample``: the distinct segment
    ids ``>= 0`` of the visual tokens after its ``input``, ``segment`` and ``frame`` stages (a prefill
    under those stages alone, untimed); None when it records none."""
    full = session.plan(sample.frames or session.num_frames)
    if not full.pre_llm:
        return None
    plan = PruningPlan.of(full.pre_llm, session.adapter.model_info(sample.frames).num_layers)
    state = session.adapter.prefill(sample, plan, mode=session.mode, seed=session.seed).state
    ids = state.segment[state.is_visual]
    found = int(torch.unique(ids[ids >= 0]).numel())
    return found or None


def measure_session(
    session: Session,
    sample: EncodedSample,
    *,
    decode_tokens: int = 16,
    warmup: int = 2,
    repeats: int = 5,
) -> SpeedRow:
    """Time ``session`` on ``sample``: ``warmup`` untimed runs, then the medians of ``repeats``."""
    adapter = session.adapter
    shape = LMShape.from_config(adapter.config.text_config)
    gpus = model_gpus(adapter)
    runs: list[AnswerResult] = []
    peaks: list[float] = []
    for i in range(warmup + repeats):
        for gpu in gpus:
            torch.cuda.reset_peak_memory_stats(gpu)
        result = session.answer(sample, max_new_tokens=decode_tokens)
        if i >= warmup:
            runs.append(result)
            peaks.append(sum(torch.cuda.max_memory_allocated(gpu) for gpu in gpus) / 2**30)

    def med(key: str) -> float:
        return median(r.timings_ms.get(key, 0.0) for r in runs)

    first = runs[0]
    stages = sorted({k for r in runs for k in r.timings_ms if k.startswith("stage:")})
    prefill, pruning = med("prefill"), med("pruning")
    decode_steps = max(1, len(first.generated) - 1)
    return SpeedRow(
        strategy=session.label,
        keep=session.keep,
        frames=sample.frames,
        visual_tokens=first.total_visual,
        retention_layer_average=first.layer_average_retention,
        retention_input=first.input_retention,
        vision_ms=sample.encode_ms,
        pruning_ms=pruning,
        lm_prefill_ms=median(
            r.timings_ms.get("prefill", 0.0) - r.timings_ms.get("pruning", 0.0) for r in runs
        ),
        prefill_ms=prefill,
        ttft_ms=sample.encode_ms + prefill,
        decode_ms_per_token=med("decode") / decode_steps,
        peak_mem_gib=median(peaks),
        kv_cache_mib=kv_cache_bytes(shape, first, adapter.model.dtype) / 2**20,
        flops_exact=prefill_flops(shape, first.counts, "exact"),
        flops_paper=prefill_flops(shape, first.counts, "paper"),
        stage_ms={k.removeprefix("stage:"): med(k) for k in stages},
        segments=segments_formed(session, sample),
    )


def time_vision(
    adapter: Adapter,
    frames: torch.Tensor,
    text_tokens: int,
    *,
    features: str,
    capture: bool,
    repeats: int = 5,
) -> EncodedSample:
    """Encode uint8 ``frames`` ``[T, H, W, 3]`` (:func:`~prune_bench.runner.speed_input.speed_sample`)
    ``repeats`` times after one warm-up; the returned sample carries the median time."""
    samples = [
        speed_sample(adapter, frames, text_tokens, features=features, capture_vision=capture)
        for _ in range(repeats + 1)
    ]
    sample = samples[-1]
    sample.encode_ms = median(s.encode_ms for s in samples[1:])
    return sample


@torch.no_grad()
def hf_lm_prefill_ms(adapter: Adapter, sample: EncodedSample, *, warmup: int = 2, repeats: int = 5) -> float:
    """The Hugging Face language model's own prefill of the unpruned prompt (same embeddings and backend)."""
    model = adapter.model
    lm = model.model.language_model
    embeds = sample.state.hidden[None]
    pos = sample.state.position
    position = pos[None] if pos.dim() == 1 else pos[:, None]  # M-RoPE ids are [3, 1, N]
    clock = Clock(adapter.device)
    times = []
    for i in range(warmup + repeats):
        clock.reset()
        with clock.measure("hf"):
            out = lm(inputs_embeds=embeds, position_ids=position, use_cache=True)
            # back on the first GPU, as the decoder loop's logits: the clock's end waits for the last GPU
            model.lm_head(out.last_hidden_state[:, -1]).to(embeds.device)
        if i >= warmup:
            times.append(clock.totals_ms()["hf"])
    return median(times)


def finish(rows: list[SpeedRow]) -> list[SpeedRow]:
    """Fill speed-ups relative to the unpruned row of the same frame count."""
    for row in rows:
        base = next((r for r in rows if r.strategy == "none" and r.frames == row.frames), None)
        if base is None:
            continue
        row.speedup = base.lm_prefill_ms / row.lm_prefill_ms if row.lm_prefill_ms else float("nan")
        row.ideal_speedup = base.flops_exact / row.flops_exact if row.flops_exact else float("nan")
    return rows
