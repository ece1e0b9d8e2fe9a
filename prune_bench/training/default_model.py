"""Train the small LLaVA-OneVision model that prune-bench ships as its default.

Recipe: a SigLIP-style tower (hidden 128, 3 layers, patch 8 on 64x64 frames: 8x8 patches, pooled by
LLaVA-OneVision's 2x2 video pooling to 16 tokens a frame) and a Qwen2-style LM (hidden 256, 8
layers, 4 heads, 2 KV heads), trained from scratch on synthetic videos generated on the device, or
continued from an earlier run's weights (``init``: same shape; rows of words the earlier tokenizer
knew are carried over by word), so a recipe can run in stages that each fit one GPU session. The
model answers with the option word; the loss is cross-entropy on that one word. AdamW, linear
warm-up then cosine decay, bf16 autocast on GPU. When ``minutes`` is set, the number of steps is
fitted to that time budget from the speed of the first steps, so the schedule always completes.

Held-out accuracy is measured afterwards by loading the saved directory with
``LlavaOnevisionAdapter.from_pretrained`` and running the project's evaluation loop on the
``test`` split, so the numbers in the model card are what ``prune-bench compare`` reports.
"""

from __future__ import annotations

import json
import math
import platform
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from prune_bench.adapters.base import PromptFormat
from prune_bench.benchmarks.synthetic.vocab import TASKS
from prune_bench.training.data import PromptEncoder, make_batch, sample_parts, task_counts
from prune_bench.training.tokenizer import build_tokenizer, save_tokenizer

PROMPT_TEMPLATE = "Video: {video}\nQuestion: {question}\nOptions: {options}\nAnswer:"
#: task mix of a training batch; ``shape`` is the training-only single-scene ``detail`` curriculum
DEFAULT_WEIGHTS: dict[str, float] = {
    "needle": 0.5,
    "order": 0.5,
    "count": 1.1,
    "motion": 1.3,
    "detail": 1.4,
    "shape": 0.4,
    "change": 0.4,
}


@dataclass
class ModelShape:
    """The architecture; defaults are the shipped model, ``tiny()`` is for CPU smoke tests."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    vision_intermediate: int = 512
    text_hidden: int = 256
    text_layers: int = 8
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 768

    @classmethod
    def tiny(cls) -> ModelShape:
        return cls(
            image_size=32,
            vision_hidden=32,
            vision_layers=1,
            vision_heads=2,
            vision_intermediate=64,
            text_hidden=32,
            text_layers=2,
            text_heads=2,
            text_kv_heads=1,
            text_intermediate=64,
        )


@dataclass
class TrainSettings:
    """Everything that defines a training run (recorded in the model card)."""

    steps: int = 20000
    minutes: float | None = 8.0
    batch_size: int = 96
    lr: float = 8e-4
    min_lr_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    num_frames: int = 32
    eval_items: int = 300
    eval_seed: int = 0
    eval_random_keep: float | None = 0.1
    task_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    shape: ModelShape = field(default_factory=ModelShape)
    #: continue from the weights of an earlier run's model directory instead of a fresh initialisation
    init: str | None = None


def build_config(
    shape: ModelShape, vocab_size: int, video_token_id: int, image_token_id: int, pad_id: int
) -> Any:
    """The ``LlavaOnevisionConfig`` of the default model."""
    from transformers import LlavaOnevisionConfig

    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": shape.vision_hidden,
            "intermediate_size": shape.vision_intermediate,
            "num_hidden_layers": shape.vision_layers,
            "num_attention_heads": shape.vision_heads,
            "image_size": shape.image_size,
            "patch_size": shape.patch_size,
            "vision_use_head": False,
        },
        text_config={
            "model_type": "qwen2",
            "hidden_size": shape.text_hidden,
            "intermediate_size": shape.text_intermediate,
            "num_hidden_layers": shape.text_layers,
            "num_attention_heads": shape.text_heads,
            "num_key_value_heads": shape.text_kv_heads,
            "vocab_size": vocab_size,
            "max_position_embeddings": 2048,
            "pad_token_id": pad_id,
            "tie_word_embeddings": False,
        },
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        video_token_id=video_token_id,
        image_token_id=image_token_id,
    )
    return config


def video_token_count(shape: ModelShape, num_frames: int) -> int:
    """Placeholders of one video: ``frames x ceil(grid / 2)^2 + 1`` (the newline)."""
    return num_frames * math.ceil(shape.image_size / shape.patch_size / 2) ** 2 + 1


def answer_logits(
    model: Any, pixels: torch.Tensor, ids: torch.Tensor, last: torch.Tensor, video_token_id: int
) -> torch.Tensor:
    """Next-token logits at each prompt's last position, computed as the adapter encodes a video:
    vision tower, projector, 2x2 pooling, one newline token after all frames."""
    inner = model.model
    b = ids.shape[0]
    feats = inner.vision_tower(pixels, output_hidden_states=True).hidden_states[
        model.config.vision_feature_layer
    ]
    feats = pool_video(inner, inner.multi_modal_projector(feats))  # [B*T, P, D]
    d = feats.shape[-1]
    feats = feats.reshape(b, -1, d)
    newline = inner.image_newline.to(feats.dtype)[None, None].expand(b, 1, d)
    video = torch.cat([feats, newline], dim=1)
    embeds = inner.language_model.embed_tokens(ids)
    slots = (ids == video_token_id)[..., None].expand_as(embeds)
    embeds = embeds.masked_scatter(slots, video.to(embeds.dtype))
    hidden = inner.language_model(inputs_embeds=embeds, use_cache=False).last_hidden_state
    return model.lm_head(hidden[torch.arange(b, device=ids.device), last])


def pool_video(inner: Any, feats: torch.Tensor) -> torch.Tensor:
    """LLaVA-OneVision's ``apply_pooling`` (bilinear resize of the patch grid to ``ceil(g/2)``).

    For an even grid, bilinear halving with ``align_corners=False`` is exactly a 2x2 average, which
    CUDA computes far faster than ``upsample_bilinear2d`` (300 ms a batch on an H100 in bf16)."""
    n, p, d = feats.shape
    g = math.isqrt(p)
    if g * g != p or g % 2:
        return inner.apply_pooling(feats)
    grid = feats.view(n, g, g, d).permute(0, 3, 1, 2)
    return F.avg_pool2d(grid, 2).permute(0, 2, 3, 1).reshape(n, -1, d)


#: steps timed phase by phase (with device synchronisation) for the training log
PROFILE_STEPS = (40, 50)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train_default_model(
    out_dir: str | Path,
    settings: TrainSettings | None = None,
    device: str = "cuda",
    log: Callable[[str], None] = print,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train, save (safetensors, bf16), evaluate through the adapter, and write the model card.

    Returns the run's summary (also written to ``training_summary.json`` next to the weights).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers import LlavaOnevisionForConditionalGeneration

    s = settings or TrainSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    torch.manual_seed(s.seed)
    tokenizer = build_tokenizer(PROMPT_TEMPLATE)
    vocab = tokenizer.get_vocab()
    config = build_config(s.shape, len(vocab), vocab["<video>"], vocab["<image>"], vocab["[PAD]"])
    config._attn_implementation = "sdpa"
    earlier = None
    if s.init:
        model, earlier = load_init(s.init, config, vocab)
        model = model.to(dev).train()
        log(f"continuing from {s.init} ({earlier.get('steps', '?')} steps)")
    else:
        model = LlavaOnevisionForConditionalGeneration(config).to(dev).train()
    n_params = sum(p.numel() for p in model.parameters())
    fmt = PromptFormat(template=PROMPT_TEMPLATE, answer_mode="option_word", num_frames=s.num_frames)
    encoder = PromptEncoder(tokenizer, fmt, config.video_token_id, video_token_count(s.shape, s.num_frames))
    counts = task_counts(s.batch_size, s.task_weights)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr,
        betas=(0.9, 0.98),
        fused=dev.type == "cuda",
    )
    g = torch.Generator(device=dev).manual_seed(s.seed)
    autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    log(f"default model: {n_params / 1e6:.2f} M parameters, batch {counts}, device {_device_name(dev)}")

    total = s.steps
    budget = s.minutes * 60 if s.minutes else None
    started = time.perf_counter()
    running: dict[str, list[float]] = {t: [] for t in counts}
    loss_avg = None
    columns = (
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    step, mark = 0, started
    with Progress(*columns, disable=not show_progress) as progress:
        bar = progress.add_task("train", total=total, info="")
        profile: dict[str, float] = {"data": 0.0, "model": 0.0}
        while step < total:
            timed = PROFILE_STEPS[0] <= step < PROFILE_STEPS[1]  # where a step's time goes, logged once
            if timed:
                _sync(dev)
                t0 = time.perf_counter()
            parts = sample_parts(g, counts, s.num_frames, s.shape.image_size)
            batch = make_batch(parts, encoder, fmt, s.shape.image_size, dev)
            if timed:
                _sync(dev)
                t1 = time.perf_counter()
                profile["data"] += t1 - t0
            for group in opt.param_groups:
                group["lr"] = s.lr * lr_factor(step, s.warmup, total, s.min_lr_ratio)
            with autocast:
                logits = answer_logits(model, batch.pixels, batch.ids, batch.last, config.video_token_id)
            loss = F.cross_entropy(logits.float(), batch.target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
            opt.step()
            if timed:
                _sync(dev)
                profile["model"] += time.perf_counter() - t1
            step += 1
            if step == PROFILE_STEPS[1]:
                n = PROFILE_STEPS[1] - PROFILE_STEPS[0]
                log(
                    f"steps {PROFILE_STEPS[0]}-{PROFILE_STEPS[1]} (synchronised): data "
                    f"{1000 * profile['data'] / n:.1f} ms, model {1000 * profile['model'] / n:.1f} ms a step"
                )
            if step % 25 == 0 or step == total:
                value = float(loss.detach())
                loss_avg = value if loss_avg is None else 0.9 * loss_avg + 0.1 * value
                hits = (logits.argmax(-1) == batch.target).tolist()
                for task, hit in zip(batch.tasks, hits, strict=True):
                    running[task] = (running[task] + [float(hit)])[-200:]
                if step == 25:
                    mark = time.perf_counter()
                if budget is not None and step == 100:
                    # fit the schedule to the time budget from the speed of steps 25-100
                    per_step = (time.perf_counter() - mark) / 75
                    left = budget - (time.perf_counter() - started)
                    total = max(step + 1, min(s.steps, step + int(left / per_step)))
                    progress.update(bar, total=total)
                    log(f"{per_step * 1000:.0f} ms a step: {total} steps fit {s.minutes:g} minutes")
            if step % 500 == 0 or step == total:
                accs = " ".join(f"{t} {100 * sum(v) / max(1, len(v)):.0f}" for t, v in running.items())
                log(
                    f"step {step}/{total} loss {loss_avg:.3f} train acc: {accs} ({time.perf_counter() - started:.0f} s)"
                )
            progress.update(bar, completed=step, info=f"loss {loss_avg:.3f}" if loss_avg is not None else "")
    train_seconds = time.perf_counter() - started

    model = model.to(torch.bfloat16).eval()
    model.save_pretrained(str(out))
    save_tokenizer(tokenizer, out)
    (out / "prune_bench.json").write_text(
        json.dumps(
            {
                "prompt_template": PROMPT_TEMPLATE,
                "answer_mode": "option_word",
                "num_frames": s.num_frames,
                "pixel_mean": list(fmt.pixel_mean),
                "pixel_std": list(fmt.pixel_std),
                "benchmark": "synthetic",
                "frame_size": s.shape.image_size,
            },
            indent=2,
        )
        + "\n"
    )
    weights = out / "model.safetensors"
    summary: dict[str, Any] = {
        "parameters": n_params,
        "steps": step,
        "train_seconds": round(train_seconds, 1),
        "device": _device_name(dev),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "weights_mb": round(weights.stat().st_size / 2**20, 2) if weights.exists() else None,
        "settings": asdict(s),
        "final_loss": loss_avg,
    }
    if earlier is not None:
        summary["init"] = {k: v for k, v in earlier.items() if k != "heldout"}
    import transformers

    summary["transformers"] = transformers.__version__
    log(
        f"trained {step} steps in {train_seconds:.0f} s; evaluating {s.eval_items} held-out items through the adapter"
    )
    del model, opt
    summary["heldout"] = evaluate_model_dir(out, s, device, show_progress=show_progress)
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(summary))
    for label, acc in summary["heldout"].items():
        log(f"held-out {label}: " + " ".join(f"{t} {a:.1f}" for t, a in acc.items()))
    return summary


def load_init(path: str, config: Any, vocab: Mapping[str, int]) -> tuple[Any, dict[str, Any]]:
    """A model of ``config`` holding an earlier run's weights, and that run's summary (``{}`` if none).

    The architecture must be the same; the vocabulary may have grown (a word added to the benchmark or
    to a training question): the embedding and output rows of every word the earlier tokenizer knew
    are carried over by word, new words keep their fresh initialisation."""
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    from prune_bench.errors import UserError

    where = Path(path)
    if not (where / "config.json").is_file() or not (where / "model.safetensors").is_file():
        raise UserError(f"--init {path}: not a model directory (config.json and model.safetensors expected)")
    old = LlavaOnevisionForConditionalGeneration.from_pretrained(str(where), dtype=torch.float32)
    old_vocab = AutoTokenizer.from_pretrained(str(where)).get_vocab()
    model = LlavaOnevisionForConditionalGeneration(config)
    theirs = old.state_dict()
    shared = [w for w in vocab if w in old_vocab]
    new_rows = torch.tensor([vocab[w] for w in shared])
    old_rows = torch.tensor([old_vocab[w] for w in shared])
    with torch.no_grad():
        for name, param in model.state_dict().items():
            if name not in theirs:
                raise UserError(f"--init {path}: its model has no '{name}'; it is another architecture")
            if name.endswith(("embed_tokens.weight", "lm_head.weight")):
                param[new_rows] = theirs[name][old_rows].to(param.dtype)
            elif theirs[name].shape != param.shape:
                raise UserError(
                    f"--init {path}: '{name}' is {tuple(theirs[name].shape)} there and "
                    f"{tuple(param.shape)} here; train with the same shape settings"
                )
            else:
                param.copy_(theirs[name])
    summary_file = where / "training_summary.json"
    earlier = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    earlier["new_words"] = sorted(set(vocab) - set(old_vocab))
    return model, earlier


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu")


def evaluate_model_dir(
    path: str | Path, s: TrainSettings, device: str, show_progress: bool = False
) -> dict[str, dict[str, float]]:
    """Accuracy per task (and ``avg``) of the saved model on the ``test`` split, for the unpruned
    model and (when ``s.eval_random_keep``) random pruning, through the project's evaluation loop."""
    from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
    from prune_bench.benchmarks.synthetic import SyntheticVideoQA
    from prune_bench.core.compose import build_strategy
    from prune_bench.core.plugins import registry
    from prune_bench.runner.evaluate import RunConfig, evaluate
    from prune_bench.runner.store import ResultStore
    from prune_bench.runner.summary import summarize

    adapter = LlavaOnevisionAdapter.from_pretrained(str(path), device=device)
    bench = SyntheticVideoQA(
        split="test",
        num_items=s.eval_items,
        num_frames=s.num_frames,
        size=s.shape.image_size,
        seed=s.eval_seed,
    )
    info = adapter.model_info(s.num_frames)
    reg = registry()
    configs = [RunConfig(build_strategy("none", 1.0, "input", info, reg), 1.0, "input")]
    if s.eval_random_keep:
        keep = s.eval_random_keep
        configs.append(RunConfig(build_strategy("random", keep, "input", info, reg), keep, "input"))
    context = {"model": str(path), "benchmark": bench.name, "frames": s.num_frames, "purpose": "model card"}
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        evaluate(
            adapter,
            bench.items(),
            configs,
            store,
            context,
            num_frames=s.num_frames,
            show_progress=show_progress,
        )
        rows = summarize(store.records())
    result: dict[str, dict[str, float]] = {}
    for row in rows:
        label = "none" if row.strategy == "none" else f"{row.strategy} keep {row.keep:g}"
        result[label] = {**{t: round(a, 1) for t, a in row.accuracy.items()}, "avg": round(row.average, 1)}
    return result


def retrain_commands(summary: Mapping[str, Any], out: str = "prune_bench/assets/default_model") -> list[str]:
    """The ``prune-bench train-default`` command lines that reproduce a run, earlier stages first (a run
    continued with ``--init`` needs the run it continued from)."""
    earlier = summary.get("init")
    if not earlier or "settings" not in earlier:
        return [retrain_command(summary["settings"], out)]
    stages = 1
    while (earlier := earlier.get("init")) and "settings" in earlier:
        stages += 1
    stage = f"/tmp/default-model-stage-{stages}"
    return [*retrain_commands(summary["init"], stage), retrain_command(summary["settings"], out, init=stage)]


def retrain_command(
    s: Mapping[str, Any], out: str = "prune_bench/assets/default_model", init: str | None = None
) -> str:
    """The ``prune-bench train-default`` command line that reproduces settings ``s``."""
    default = TrainSettings()
    parts = [f"prune-bench train-default --out {out}", f"--seed {s['seed']}"]
    if init:
        parts.append(f"--init {init}")
    parts.append(f"--minutes {s['minutes'] or 0:g}")
    if s["steps"] != default.steps:
        parts.append(f"--steps {s['steps']}")
    if s["batch_size"] != default.batch_size:
        parts.append(f"--batch-size {s['batch_size']}")
    if s["lr"] != default.lr:
        parts.append(f"--lr {s['lr']:g}")
    if dict(s["task_weights"]) != default.task_weights:
        parts.append("--weights " + ",".join(f"{t}={w:g}" for t, w in s["task_weights"].items()))
    return " ".join(parts)


def parse_weights(text: str) -> dict[str, float]:
    """``"needle=0.5,count=1.4"`` -> task weights (the named tasks only; each must be known)."""
    from prune_bench.errors import UserError
    from prune_bench.training.data import TRAINING_TASKS

    known = (*TASKS, *TRAINING_TASKS)
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in known:
            raise UserError(f"--weights expects TASK=WEIGHT pairs over {', '.join(known)}; got '{part}'")
        try:
            out[name] = float(value)
        except ValueError:
            raise UserError(f"--weights: '{value}' is not a number (in '{part}')") from None
    return out


#: what each training-only task is, for the model card
CURRICULUM_TEXT = {
    "shape": "`shape` (`detail` with a single scene, so the shape alone decides)",
    "scene": "`scene` (`detail` asked the other way round: the background behind a named shape)",
    "background": "`background` (name the background of a single-scene video)",
}


def _curriculum_text(weights: Mapping[str, float]) -> str:
    used = [CURRICULUM_TEXT.get(t, f"`{t}`") for t, w in weights.items() if w > 0 and t not in TASKS]
    return f" plus the training-only curriculum tasks {' and '.join(used)}" if used else ""


def _init_lines(summary: Mapping[str, Any]) -> str:
    """The model card's lines on the earlier runs a continued run started from (empty if none)."""
    lines, earlier, total = [], summary.get("init"), summary["steps"]
    while earlier and "settings" in earlier:
        e = earlier["settings"]
        total += earlier.get("steps", 0)
        words = earlier.get("new_words") or []
        lines.append(
            f"- Continued from the weights of an earlier run: {earlier.get('steps', '?')} steps in "
            f"{earlier.get('train_seconds', 0):.0f} s on {earlier.get('device', '?')} (batch {e['batch_size']}, "
            f"lr {e['lr']:g}, task mix {e['task_weights']})"
            + (
                f"; words new since then ({', '.join(words)}) started from fresh embeddings."
                if words
                else "."
            )
        )
        earlier = earlier.get("init")
    if lines:
        lines.append(f"- {total} optimiser steps in all.")
    return "".join(line + "\n" for line in lines)


def model_card(summary: Mapping[str, Any]) -> str:
    """MODEL_CARD.md text from a training summary."""
    s = summary["settings"]
    shape = s["shape"]
    heldout = summary["heldout"]
    tasks = [t for t in TASKS if t in heldout.get("none", {})]
    header = "| | " + " | ".join(tasks) + " | avg |\n|---|" + "---|" * (len(tasks) + 1) + "\n"
    rows = "".join(
        f"| {label} | "
        + " | ".join(f"{acc.get(t, float('nan')):.1f}" for t in tasks)
        + f" | {acc['avg']:.1f} |\n"
        for label, acc in heldout.items()
    )
    per_task = s["eval_items"] // max(1, len(tasks))
    per_frame = math.ceil(shape["image_size"] / shape["patch_size"] / 2) ** 2
    return f"""# prune-bench default model

A small `LlavaOnevisionForConditionalGeneration` trained from scratch on prune-bench's synthetic
video QA benchmark. It exists so `prune-bench compare` runs out of the box, on a CPU, in seconds; its
tasks depend on short events and small objects, so visual-token pruning strategies separate on it.
It knows nothing beyond the synthetic benchmark's vocabulary.

## Architecture

- Vision: SigLIP-style tower, {shape["image_size"]}x{shape["image_size"]} frames, patch {shape["patch_size"]}, \
hidden {shape["vision_hidden"]}, {shape["vision_layers"]} layers, {shape["vision_heads"]} heads; \
LLaVA-OneVision 2x2 video pooling gives {per_frame} tokens a frame, one newline token per video.
- Language model: Qwen2-style, hidden {shape["text_hidden"]}, {shape["text_layers"]} layers, \
{shape["text_heads"]} heads ({shape["text_kv_heads"]} KV heads), MLP {shape["text_intermediate"]}.
- {summary["parameters"] / 1e6:.2f} M parameters, stored in bf16 safetensors ({summary["weights_mb"]} MB).
- Tokenizer: word-level (`tokenizers` WordLevel, lower-cased, whitespace/punctuation split).
- Prompt (`prune_bench.json`): `{PROMPT_TEMPLATE.encode("unicode_escape").decode()}`; options listed as
  words, answer scored by comparing the logits of the option words (`answer_mode: option_word`).

## Training recipe

- Data: synthetic videos ({s["num_frames"]} frames of {shape["image_size"]}x{shape["image_size"]}) of the six
  tasks (needle, order, count, motion, detail, change){_curriculum_text(s["task_weights"])}, generated on
  the training device from a generator seeded with `--seed {s["seed"]}`; task mix per batch {s["task_weights"]}.
- Loss: cross-entropy on the answer word only.
- Optimiser: AdamW (lr {s["lr"]}, betas 0.9/0.98, weight decay {s["weight_decay"]}), {s["warmup"]} warm-up steps,
  cosine decay to {s["min_lr_ratio"]} x lr, gradient clipping {s["grad_clip"]}, batch {s["batch_size"]},
  bf16 autocast.
- Ran {summary["steps"]} steps in {summary["train_seconds"]:.0f} s on {summary["device"]}
  (torch {summary["torch"]}, transformers {summary["transformers"]}); final training loss {summary["final_loss"]:.4f}.
{_init_lines(summary)}
## Held-out accuracy (%)

`SyntheticVideoQA(split="test", seed={s["eval_seed"]}, num_items={s["eval_items"]})` ({per_task} items a task;
test seeds are hashed from the split name and never drawn in training), measured by loading this
directory with `LlavaOnevisionAdapter.from_pretrained` and running prune-bench's evaluation loop
(input-level budget for random pruning):

{header}{rows}
## Retrain

```
{chr(10).join(retrain_commands(summary))}
```

Needs a CUDA GPU ({"the last stage took" if summary.get("init") else "took"} about {summary["train_seconds"] / 60:.0f} minutes on {summary["device"]}); the step count is
fitted to `--minutes` from the measured speed, so a different GPU gives a different number of steps.
"""
