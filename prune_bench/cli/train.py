"""``prune-bench train-default``: retrain the shipped small model on synthetic videos."""

from __future__ import annotations

import click

from prune_bench.adapters.loading import DEFAULT_MODEL_DIR, pick_device
from prune_bench.errors import UserError


@click.command("train-default")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Directory to write the model, tokenizer and MODEL_CARD.md to, e.g. my_model/ "
    "(the installed package's shipped model only with --overwrite-shipped).",
)
@click.option(
    "--overwrite-shipped",
    is_flag=True,
    help="Let --out be the shipped model's directory, prune_bench/assets/default_model "
    "(for maintainers retraining the shipped model).",
)
@click.option(
    "--steps",
    type=int,
    default=20000,
    show_default=True,
    help="Most optimiser steps (fewer when --minutes runs out first).",
)
@click.option(
    "--minutes",
    type=float,
    default=8.0,
    show_default=True,
    help="Training time budget; the step count is fitted to it (0 = run all --steps).",
)
@click.option("--device", default=None, help="cuda or cpu (default: cuda if available).")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the weights and the training data."
)
@click.option("--batch-size", type=int, default=96, show_default=True)
@click.option("--lr", type=float, default=8e-4, show_default=True, help="Peak AdamW learning rate.")
@click.option(
    "--weights",
    default=None,
    help="Task mix, e.g. 'count=1.4,detail=1.3' (unnamed tasks keep their default weight).",
)
@click.option(
    "--init",
    type=click.Path(file_okay=False),
    default=None,
    help="Continue from the weights of an earlier run's directory (same shape; new words start fresh).",
)
@click.option(
    "--eval-items", type=int, default=300, show_default=True, help="Held-out items for the model card."
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def train_default(
    out: str,
    overwrite_shipped: bool,
    steps: int,
    minutes: float,
    device: str | None,
    seed: int,
    batch_size: int,
    lr: float,
    weights: str | None,
    init: str | None,
    eval_items: int,
    no_progress: bool,
) -> None:
    """Train the default model (a few million parameters) and write it with its model card."""
    from rich.console import Console

    from prune_bench.training import TrainSettings, is_shipped_model_dir, parse_weights, train_default_model

    if is_shipped_model_dir(out) and not overwrite_shipped:
        raise UserError(
            f"--out {out} is the shipped model of the installed package ({DEFAULT_MODEL_DIR}); "
            "pass another directory (e.g. --out my_model/), or --overwrite-shipped to replace it"
        )

    console = Console()
    settings = TrainSettings(
        steps=steps,
        minutes=minutes or None,
        seed=seed,
        batch_size=batch_size,
        lr=lr,
        eval_items=eval_items,
        init=init,
    )
    if weights:
        settings.task_weights.update(parse_weights(weights))
    train_default_model(
        out, settings, device=pick_device(device), log=console.print, show_progress=not no_progress
    )
    console.print(f"wrote {out} (see MODEL_CARD.md there)")
