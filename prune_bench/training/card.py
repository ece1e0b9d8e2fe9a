"""MODEL_CARD.md: the card's text from a training summary, and the ``prune-bench train-default``
command lines that reproduce a run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prune_bench.adapters.loading import DEFAULT_MODEL_DIR
from prune_bench.benchmarks.synthetic.vocab import TASKS
from prune_bench.training.settings import PROMPT_TEMPLATE, TrainSettings

#: the shipped model's directory as the retrain commands name it (run from the repository root)
SHIPPED_OUT = "prune_bench/assets/default_model"


def is_shipped_model_dir(path: str | Path) -> bool:
    """Whether ``path`` is the installed package's shipped model directory (links resolved), which
    ``train-default`` overwrites only with ``--overwrite-shipped``."""
    return Path(path).resolve() == DEFAULT_MODEL_DIR.resolve()


def retrain_commands(summary: Mapping[str, Any], out: str = SHIPPED_OUT) -> list[str]:
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


def retrain_command(s: Mapping[str, Any], out: str = SHIPPED_OUT, init: str | None = None) -> str:
    """The ``prune-bench train-default`` command line that reproduces settings ``s``."""
    default = TrainSettings()
    parts = [f"prune-bench train-default --out {out}"]
    if out == SHIPPED_OUT or is_shipped_model_dir(out):
        parts.append("--overwrite-shipped")
    parts.append(f"--seed {s['seed']}")
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
