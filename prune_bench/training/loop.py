"""The optimisation loop of the default model: train, save, evaluate, write the model card.

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
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from prune_bench.adapters.base import PromptFormat
from prune_bench.training.card import model_card
from prune_bench.training.data import PromptEncoder, make_batch, sample_parts, task_counts
from prune_bench.training.evaluation import evaluate_model_dir
from prune_bench.training.forward import answer_logits
from prune_bench.training.init import load_init
from prune_bench.training.settings import PROMPT_TEMPLATE, TrainSettings
from prune_bench.training.shape import build_config, video_token_count
from prune_bench.training.tokenizer import build_tokenizer, save_tokenizer

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


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu")
