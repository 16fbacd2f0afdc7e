"""Flags of one training run, shared by ``lossweep train-local`` and ``lossweep train`` (Ray).

The flags are the fields of ``RunFlags`` (``Annotated`` option types), which ``with_run_flags`` puts
into both commands' signatures; ``build_train_config`` turns them into a ``TrainConfig`` and raises
``FlagError`` with a one-line message naming the flag. ``fail`` prints such a message and exits with
status 2 (no traceback).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, get_type_hints

import typer

from trainables.train.config import DEFAULT_EVAL_TOKENS, DEFAULT_TEST_TOKENS

if TYPE_CHECKING:
    from trainables.train.config import TrainConfig

R = TypeVar("R")

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
    str,
    typer.Option(
        "--l0",
        help="L0: 'ln_v' (ln V, the paper's text), 'initial' (measured before step 1) or a number > 0 "
        "(the official notebook's 10.83).",
    ),
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
EvalTokensOpt = Annotated[
    int, typer.Option("--eval-tokens", help="Validation tokens per evaluation (windows spread over the split).")
]
TestTokensOpt = Annotated[
    int, typer.Option("--test-tokens", help="Test tokens of the final evaluation on the held-out test split.")
]
TestIntervalOpt = Annotated[
    int,
    typer.Option("--test-interval", help="Steps between test evaluations besides the last (0: only at the end)."),
]
SamplingOpt = Annotated[
    str,
    typer.Option(
        "--sampling", help="Training windows: 'epoch' (a permutation per epoch) or 'random' (with replacement)."
    ),
]
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


@dataclass(frozen=True)
class RunFlags:
    """The flags of one training run, declared once for both commands (:func:`with_run_flags`)."""

    preset: PresetOpt = "tiny"
    data: DataOpt = "stdlib"
    tokenizer: TokenizerOpt = "bytes"
    column: ColumnOpt = "tokens"
    seq_len: SeqLenOpt = 128
    batch_size: BatchSizeOpt = 16
    steps: StepsOpt = 200
    lr: LrOpt = 1e-3
    min_lr: MinLrOpt = 1e-5
    warmup: WarmupOpt = None
    weight_decay: WeightDecayOpt = 0.0
    precision: PrecisionOpt = "fp32"
    head_precision: HeadPrecisionOpt = None
    tf32: Tf32Opt = True
    init: InitOpt = "oec"
    mlp_hidden: MlpHiddenOpt = None
    l0: L0Opt = "ln_v"
    sustained_evals: SustainedOpt = 0
    eval_interval: EvalIntervalOpt = None
    eval_tokens: EvalTokensOpt = DEFAULT_EVAL_TOKENS
    test_tokens: TestTokensOpt = DEFAULT_TEST_TOKENS
    test_interval: TestIntervalOpt = 0
    sampling: SamplingOpt = "epoch"
    seed: SeedOpt = 0
    loss: LossOpt = None
    gpu: GpuOpt = False


def with_run_flags(command: Callable[..., R]) -> Callable[..., R]:
    """``command`` with the fields of :class:`RunFlags` as its first options (typer reads the signature,
    so ``--help`` lists them as before); it receives them as one ``flags: RunFlags`` argument."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "flags"]
    hints = get_type_hints(RunFlags, include_extras=True)
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in fields(RunFlags)
    ]
    names = [f.name for f in fields(RunFlags)]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> R:
        flags = RunFlags(**{name: kwargs.pop(name) for name in names})
        return command(flags=flags, **kwargs)

    parameters = shared + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
    wrapper.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def _l0_value(text: str) -> str | float:
    """``--l0``'s text as the config holds it: a convention name, or a number."""
    try:
        return float(text)
    except ValueError:
        return text


def build_train_config(flags: RunFlags, *, use_gpu: bool | None = None) -> TrainConfig:
    """The ``TrainConfig`` the flags describe (``use_gpu`` overrides ``--gpu``); ``FlagError`` on any
    invalid value."""
    from trainables.data.corpus import CORPUS_KINDS
    from trainables.data.tokenizer import parse_tokenizer_spec
    from trainables.losses.config import LossConfig
    from trainables.model.config import INITS
    from trainables.model.presets import model_preset
    from trainables.train.config import SAMPLINGS, DataConfig, DivergenceConfig, OptimConfig, TrainConfig, l0_problem

    def check(ok: bool, flag: str, problem: str) -> None:
        if not ok:
            raise FlagError(f"{flag}: {problem}")

    f = flags
    check(f.steps >= 1, "--steps", f"must be >= 1, got {f.steps}")
    check(f.seq_len >= 2, "--seq-len", f"must be >= 2, got {f.seq_len}")
    check(f.batch_size >= 1, "--batch-size", f"must be >= 1, got {f.batch_size}")
    check(f.lr > 0, "--lr", f"must be > 0, got {f.lr}")
    check(f.min_lr >= 0, "--min-lr", f"must be >= 0, got {f.min_lr}")
    check(f.weight_decay >= 0, "--weight-decay", f"must be >= 0, got {f.weight_decay}")
    check(f.eval_tokens >= 1, "--eval-tokens", f"must be >= 1, got {f.eval_tokens}")
    check(f.test_tokens >= 1, "--test-tokens", f"must be >= 1, got {f.test_tokens}")
    check(f.sampling in SAMPLINGS, "--sampling", f"must be one of {', '.join(SAMPLINGS)}, got {f.sampling!r}")
    check(f.precision in ("fp32", "bf16"), "--precision", f"must be 'fp32' or 'bf16', got {f.precision!r}")
    problem = f"must be 'fp32' or 'bf16', got {f.head_precision!r}"
    check(f.head_precision in (None, "fp32", "bf16"), "--head-precision", problem)
    check(f.init in INITS, "--init", f"must be one of {', '.join(INITS)}, got {f.init!r}")
    check(f.mlp_hidden is None or f.mlp_hidden >= 1, "--mlp-hidden", f"must be >= 1, got {f.mlp_hidden}")
    l0 = _l0_value(f.l0)
    problem = l0_problem(l0)
    check(problem is None, "--l0", str(problem))
    check(f.sustained_evals >= 0, "--sustained-evals", f"must be >= 0, got {f.sustained_evals}")
    warmup = f.warmup if f.warmup is not None else f.steps // 20
    check(0 <= warmup < f.steps, "--warmup", f"must be in [0, --steps), got {warmup}")
    eval_interval = f.eval_interval if f.eval_interval is not None else min(50, f.steps)
    check(eval_interval >= 1, "--eval-interval", f"must be >= 1, got {eval_interval}")
    problem = f"must be 0 or a multiple of --eval-interval ({eval_interval}), got {f.test_interval}"
    check(f.test_interval >= 0 and f.test_interval % eval_interval == 0, "--test-interval", problem)
    try:
        model_preset(f.preset)
    except ValueError as exc:
        raise FlagError(f"--preset: {exc}") from None
    try:
        parse_tokenizer_spec(f.tokenizer)
    except ValueError as exc:
        raise FlagError(f"--tokenizer: {exc}") from None
    kind = f.data.partition(":")[0]
    check(f.data == "stdlib" or kind in ("text", "parquet", "shards"), "--data", f"use {CORPUS_KINDS}, not {f.data!r}")
    try:
        loss = LossConfig.from_cli(list(f.loss or ()))
    except ValueError as exc:
        raise FlagError(f"--loss: {exc}") from None
    try:
        return TrainConfig(
            model=f.preset,
            model_overrides={
                **({"init": f.init} if f.init != "oec" else {}),
                **({"mlp_hidden": f.mlp_hidden} if f.mlp_hidden is not None else {}),
            },
            data=DataConfig(
                corpus=f.data,
                tokenizer=f.tokenizer,
                column=f.column,
                seq_len=f.seq_len,
                batch_size=f.batch_size,
                eval_tokens=f.eval_tokens,
                test_tokens=f.test_tokens,
                sampling=f.sampling,  # type: ignore[arg-type]
            ),
            optim=OptimConfig(lr=f.lr, min_lr=f.min_lr, warmup_steps=warmup, weight_decay=f.weight_decay),
            loss=loss,
            steps=f.steps,
            eval_interval=eval_interval,
            test_interval=f.test_interval,
            seed=f.seed,
            precision=f.precision,  # type: ignore[arg-type]
            head_precision=f.head_precision,  # type: ignore[arg-type]
            allow_tf32=f.tf32,
            divergence=DivergenceConfig(l0=l0, sustained_evals=f.sustained_evals),  # type: ignore[arg-type]
            use_gpu=f.gpu if use_gpu is None else use_gpu,
        )
    except ValueError as exc:
        raise FlagError(str(exc)) from None
