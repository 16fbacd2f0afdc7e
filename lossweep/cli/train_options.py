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
HeadPrecisionOpt = Annotated[
    str | None,
    typer.Option("--head-precision", help="LM head's precision, 'fp32' or 'bf16' (default: --precision's)."),
]
Tf32Opt = Annotated[
    bool, typer.Option("--tf32/--no-tf32", help="TF32 for float32 matmuls on CUDA (the official code's setting).")
]
InitOpt = Annotated[
    str, typer.Option("--init", help="'oec' (the official code's initialisation) or 'legacy' (the earlier one).")
]
MlpHiddenOpt = Annotated[
    int | None,
    typer.Option("--mlp-hidden", help="SwiGLU hidden width (default: the official 256 * ceil(int(8d/3) / 256))."),
]
L0Opt = Annotated[
    str, typer.Option("--l0", help="L0: 'ln_v' (ln V, the paper's text) or 'initial' (measured before step 1).")
]
SustainedOpt = Annotated[
    int,
    typer.Option(
        "--sustained-evals",
        help="End the run after K consecutive evaluations above L0 + 1 nat (0: never; it is only recorded).",
    ),
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
    head_precision: str | None = None,
    tf32: bool = True,
    init: str = "oec",
    mlp_hidden: int | None = None,
    l0: str = "ln_v",
    sustained_evals: int = 0,
    eval_interval: int | None = None,
    eval_batches: int = 4,
    seed: int = 0,
    losses: Sequence[str] | None = None,
    use_gpu: bool = False,
) -> TrainConfig:
    """The ``TrainConfig`` the flags describe; ``FlagError`` on any invalid value."""
    from trainables.config import L0_CONVENTIONS, DataConfig, DivergenceConfig, OptimConfig, TrainConfig
    from trainables.corpus import CORPUS_KINDS
    from trainables.losses.config import LossConfig
    from trainables.presets import INITS, model_preset
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
    problem = f"must be 'fp32' or 'bf16', got {head_precision!r}"
    check(head_precision in (None, "fp32", "bf16"), "--head-precision", problem)
    check(init in INITS, "--init", f"must be one of {', '.join(INITS)}, got {init!r}")
    check(mlp_hidden is None or mlp_hidden >= 1, "--mlp-hidden", f"must be >= 1, got {mlp_hidden}")
    check(l0 in L0_CONVENTIONS, "--l0", f"must be one of {', '.join(L0_CONVENTIONS)}, got {l0!r}")
    check(sustained_evals >= 0, "--sustained-evals", f"must be >= 0, got {sustained_evals}")
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
            model_overrides={
                **({"init": init} if init != "oec" else {}),
                **({"mlp_hidden": mlp_hidden} if mlp_hidden is not None else {}),
            },
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
            head_precision=head_precision,  # type: ignore[arg-type]
            allow_tf32=tf32,
            divergence=DivergenceConfig(l0=l0, sustained_evals=sustained_evals),  # type: ignore[arg-type]
            use_gpu=use_gpu,
        )
    except ValueError as exc:
        raise FlagError(str(exc)) from None
