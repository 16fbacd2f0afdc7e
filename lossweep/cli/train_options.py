"""Flags of one training run, shared by ``lossweep train-local`` and ``lossweep train`` (Ray).

The option types are ``Annotated`` aliases so both commands declare identical flags; the flags are
turned into a ``TrainConfig`` by ``build_train_config``, which raises ``FlagError`` with a one-line
message naming the flag. ``fail`` prints such a message and exits with status 2 (no traceback).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from trainables.config import TrainConfig

PresetOpt = Annotated[str, typer.Option("--preset", help="Model preset (see `lossweep presets --models`).")]
DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="Corpus: 'stdlib' (the Python standard library), 'text:PATH', 'parquet:PATH' or 'shards:DIR' "
        "(made by `lossweep data prepare`).",
    ),
]
TokenizerOpt = Annotated[str, typer.Option("--tokenizer", help="'bytes' or 'bpe:N' (BPE trained on the corpus).")]
ColumnOpt = Annotated[str, typer.Option("--column", help="Token-id column of a parquet corpus.")]
SeqLenOpt = Annotated[int, typer.Option("--seq-len", help="Tokens per sequence.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Global batch (sequences per step over all workers).")]
StepsOpt = Annotated[int, typer.Option("--steps", help="Optimizer steps.")]
LrOpt = Annotated[float, typer.Option("--lr", help="Peak learning rate.")]
MinLrOpt = Annotated[float, typer.Option("--min-lr", help="Learning rate at the end of the cosine decay.")]
WarmupOpt = Annotated[
    int | None, typer.Option("--warmup", help="Linear warmup steps (default: 5% of --steps, as in the paper).")
]
WeightDecayOpt = Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay (the paper uses 0).")]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="'fp32', or 'bf16' autocast (the paper's setting, LM head included).")
]
EvalIntervalOpt = Annotated[
    int | None, typer.Option("--eval-interval", help="Steps between evaluations (default: min(50, --steps)).")
]
EvalBatchesOpt = Annotated[int, typer.Option("--eval-batches", help="Validation batches per evaluation.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the initial weights and the batch order.")]
LossOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--loss",
        help="Loss term, repeatable: NAME[=WEIGHT][,key=value], e.g. --loss z_loss=1e-4, --loss mu_centering, "
        "--loss softcap=30, --loss simreg=0.1,temperature=0.1. None = baseline (cross entropy only).",
    ),
]
GpuOpt = Annotated[bool, typer.Option("--gpu/--cpu", help="Train on a CUDA GPU when one is available.")]


# First keys of the final JSON object of `train-local --json` and `train --json`; every metric of the
# last report follows them.
SUMMARY_KEYS = (
    "val_loss",
    "train_loss",
    "tokens",
    "steps",
    "diverged",
    "diverged_step",
    "diverged_cause",
    "tokens_per_s",
)


class FlagError(ValueError):
    """A flag value that cannot make a valid run; the message names the flag."""


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2 (a usage error), no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def build_train_config(
    *,
    preset: str = "tiny",
    data: str = "stdlib",
    tokenizer: str = "bytes",
    column: str = "tokens",
    seq_len: int = 128,
    batch_size: int = 16,
    steps: int = 200,
    lr: float = 1e-3,
    min_lr: float = 1e-5,
    warmup: int | None = None,
    weight_decay: float = 0.0,
    precision: str = "fp32",
    eval_interval: int | None = None,
    eval_batches: int = 4,
    seed: int = 0,
    losses: Sequence[str] | None = None,
    use_gpu: bool = False,
) -> TrainConfig:
    """The ``TrainConfig`` the flags describe; ``FlagError`` on any invalid value."""
    from trainables.config import DataConfig, OptimConfig, TrainConfig
    from trainables.corpus import CORPUS_KINDS
    from trainables.losses.config import LossConfig
    from trainables.presets import model_preset
    from trainables.tokenizer import parse_tokenizer_spec

    def check(ok: bool, flag: str, problem: str) -> None:
        if not ok:
            raise FlagError(f"{flag}: {problem}")

    check(steps >= 1, "--steps", f"must be >= 1, got {steps}")
    check(seq_len >= 2, "--seq-len", f"must be >= 2, got {seq_len}")
    check(batch_size >= 1, "--batch-size", f"must be >= 1, got {batch_size}")
    check(lr > 0, "--lr", f"must be > 0, got {lr}")
    check(min_lr >= 0, "--min-lr", f"must be >= 0, got {min_lr}")
    check(weight_decay >= 0, "--weight-decay", f"must be >= 0, got {weight_decay}")
    check(eval_batches >= 1, "--eval-batches", f"must be >= 1, got {eval_batches}")
    check(precision in ("fp32", "bf16"), "--precision", f"must be 'fp32' or 'bf16', got {precision!r}")
    if warmup is None:
        warmup = steps // 20
    check(0 <= warmup < steps, "--warmup", f"must be in [0, --steps), got {warmup}")
    if eval_interval is None:
        eval_interval = min(50, steps)
    check(eval_interval >= 1, "--eval-interval", f"must be >= 1, got {eval_interval}")
    try:
        model_preset(preset)
    except ValueError as exc:
        raise FlagError(f"--preset: {exc}") from None
    try:
        parse_tokenizer_spec(tokenizer)
    except ValueError as exc:
        raise FlagError(f"--tokenizer: {exc}") from None
    kind = data.partition(":")[0]
    check(data == "stdlib" or kind in ("text", "parquet", "shards"), "--data", f"use {CORPUS_KINDS}, not {data!r}")
    try:
        loss = LossConfig.from_cli(list(losses or ()))
    except ValueError as exc:
        raise FlagError(f"--loss: {exc}") from None
    try:
        return TrainConfig(
            model=preset,
            data=DataConfig(
                corpus=data,
                tokenizer=tokenizer,
                column=column,
                seq_len=seq_len,
                batch_size=batch_size,
                eval_batches=eval_batches,
            ),
            optim=OptimConfig(lr=lr, min_lr=min_lr, warmup_steps=warmup, weight_decay=weight_decay),
            loss=loss,
            steps=steps,
            eval_interval=eval_interval,
            seed=seed,
            precision=precision,  # type: ignore[arg-type]
            use_gpu=use_gpu,
        )
    except ValueError as exc:
        raise FlagError(str(exc)) from None
