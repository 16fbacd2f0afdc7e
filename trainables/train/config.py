"""Configuration of one training run.

Frozen keyword-only dataclasses: hashable, safe to share between the driver and Ray workers, and
round-trippable through plain dicts (``to_dict``/``from_dict``) so they travel as JSON in manifests,
Tune configs and Ray Jobs. A field declared with ``setting`` is a run setting: the sweep spec and the
command line build theirs from it (``trainables.train.settings``), and its range is checked here too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from trainables.losses.config import LossConfig
from trainables.model.config import Precision
from trainables.train.settings import check, setting

#: Training windows: an epoch permutation (each window once per epoch) or drawn at random with
#: replacement (the official OEC code's order); ``trainables.data.sampler``.
Sampling = Literal["epoch", "random"]
SAMPLINGS: tuple[str, ...] = typing.get_args(Sampling)
#: Predicted tokens of each periodic validation evaluation (about as many as before it had windows spread
#: over the split: it runs at every report) and of the final test evaluation, sized so that the standard
#: error of a trial's test CE on the built-in corpus is below 0.01 nats (measured: BENCHMARKS.md).
DEFAULT_EVAL_TOKENS = 8_192
DEFAULT_TEST_TOKENS = 262_144


class _DictMixin:
    """``to_dict``/``from_dict`` for nested frozen dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else _plain(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        hints = {name: _nested_type(cls, name) for name in known}
        for name, value in data.items():
            nested = hints[name]
            kwargs[name] = nested.from_dict(value) if nested is not None and isinstance(value, Mapping) else value
        return cls(**kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


_NESTED: dict[tuple[str, str], type] = {}


def _nested_type(cls: type, name: str) -> type | None:
    return _NESTED.get((cls.__name__, name))


def default_warmup(steps: int) -> int:
    """Warmup steps when none are given: 5 % of the run, as in the OEC paper (5000 of 100k steps)."""
    return steps // 20


@dataclass(frozen=True, kw_only=True)
class DataConfig(_DictMixin):
    """Where tokens come from and how they are batched.

    ``batch_size`` is the *global* batch (sequences per optimizer step summed over all ranks), so a
    2-worker run with batch B follows the same trajectory as a 1-worker run with batch B.

    ``eval_tokens``: predicted tokens of each periodic evaluation on the validation split;
    ``test_tokens``: of the test evaluation. Both are windows spread over the whole split (capped by its
    size), the same for every trial, each evaluation with its standard error over windows.
    ``sampling``: training windows in an epoch permutation (``epoch``) or at random with replacement.

    ``micro_batch``: sequences per rank per forward/backward pass (gradient accumulation). Each rank
    splits its ``batch_size / workers`` sequences into micro-batches of this size, which must divide
    it; the optimizer step is the same as without accumulation (token-weighted, see
    ``trainables.train.engine``), only the memory held at once shrinks. None = one pass per step.
    """

    corpus: str = field(
        default="stdlib",
        metadata=setting(
            "Corpus: 'stdlib' (the Python standard library), 'text:PATH', 'parquet:PATH' or 'shards:DIR' "
            "(made by `lossweep data prepare`).",
            spec="data",
            flag="--data",
        ),
    )
    # A shards: corpus brings its own tokenizer.
    tokenizer: str = field(
        default="bytes",
        metadata=setting("'bytes' or 'bpe:N' (BPE trained on the corpus).", spec="data", flag="--tokenizer"),
    )
    column: str = field(default="tokens", metadata=setting("Token-id column of a parquet corpus.", flag="--column"))
    seq_len: int = field(default=128, metadata=setting("Tokens per sequence.", ge=2, spec="data", flag="--seq-len"))
    batch_size: int = field(
        default=16,
        metadata=setting("Global batch (sequences per step over all workers).", ge=1, spec="data", flag="--batch-size"),
    )
    eval_tokens: int = field(
        default=DEFAULT_EVAL_TOKENS,
        metadata=setting(
            "Validation tokens per evaluation (windows spread over the split).", ge=1, spec="data", flag="--eval-tokens"
        ),
    )
    test_tokens: int = field(
        default=DEFAULT_TEST_TOKENS,
        metadata=setting(
            "Test tokens of the final evaluation on the held-out test split.", ge=1, spec="data", flag="--test-tokens"
        ),
    )
    sampling: Sampling = field(
        default="epoch",
        metadata=setting(
            "Training windows: 'epoch' (a permutation per epoch) or 'random' (with replacement).",
            spec="data",
            flag="--sampling",
        ),
    )
    micro_batch: int | None = field(
        default=None,
        metadata=setting(
            "Gradient accumulation: sequences per worker per forward/backward pass; must divide the batch "
            "each worker holds (default: the whole share in one pass). Same step, less memory.",
            ge=1,
            spec="budget",
            flag="--micro-batch",
        ),
    )
    cache_dir: str | None = None  # default: $LOSSWEEP_CACHE_DIR or ~/.cache/lossweep

    def __post_init__(self) -> None:
        check(self, "data.")

    def micro_steps(self, per_rank: int) -> int:
        """Forward/backward passes per optimizer step on a rank holding ``per_rank`` sequences of the
        global batch (1 without accumulation); a ValueError when ``micro_batch`` does not divide
        ``per_rank``. The one rule the engine, the spec and the CLI apply (each names its own field)."""
        if self.micro_batch is None:
            return 1
        if per_rank % self.micro_batch:
            raise ValueError(
                f"{self.micro_batch} must divide the sequences each rank holds per step "
                f"({per_rank}: the batch of {self.batch_size} over the workers)"
            )
        return per_rank // self.micro_batch


@dataclass(frozen=True, kw_only=True)
class OptimConfig(_DictMixin):
    """AdamW with linear warmup then cosine decay to ``min_lr`` (the OEC paper's recipe)."""

    lr: float = field(default=1e-3, metadata=setting("Peak learning rate.", gt=0, flag="--lr"))
    min_lr: float = field(
        default=1e-5,
        metadata=setting("Learning rate at the end of the cosine decay.", ge=0, spec="budget", flag="--min-lr"),
    )
    # None = default_warmup(steps), resolved by TrainConfig: a run's config always records the number.
    warmup_steps: int | None = field(
        default=None,
        metadata=setting(
            "Linear warmup steps (default: 5% of --steps, as in the paper).", ge=0, spec="budget", flag="--warmup"
        ),
    )
    weight_decay: float = field(
        default=0.0, metadata=setting("AdamW weight decay (the paper uses 0).", ge=0, flag="--weight-decay")
    )
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        check(self, "optim.")


L0Convention = Literal["ln_v", "initial"]
L0_CONVENTIONS: tuple[str, ...] = typing.get_args(L0Convention)


def l0_problem(value: object) -> str | None:
    """What is wrong with ``value`` as ``divergence.l0`` (None: nothing): a convention or a number > 0."""
    expected = f"must be one of {', '.join(L0_CONVENTIONS)} or a number > 0, got {value!r}"
    if isinstance(value, str):
        return None if value in L0_CONVENTIONS else expected
    if isinstance(value, bool) or not isinstance(value, int | float):
        return expected
    if not (math.isfinite(value) and value > 0):
        return f"must be > 0 when it is a number, got {value!r}"
    return None


@dataclass(frozen=True, kw_only=True)
class DivergenceConfig(_DictMixin):
    """What ends a run early, and what is only recorded (decided by all ranks together).

    A run is ended by a non-finite loss or gradient, always. Everything else is data: the paper never
    stops a run and caps the final loss at ``L0`` when it computes LR sensitivity.

    ``l0``: the reference loss ``L0``. ``"ln_v"`` (default) is the loss of a uniform predictor, as the
    paper's text defines it; ``"initial"`` is the run's measured validation loss before the first step;
    a number (> 0) fixes it, as the official notebook does (``10.83`` at V = 50304, not exactly ln V).
    ``val_margin``: after warmup, a validation CE above ``L0 + val_margin`` sets the recorded flag
    ``above_l0_step`` (the first such evaluation's step). It ends nothing unless ``sustained_evals`` > 0.
    ``sustained_evals``: K; when > 0, K consecutive evaluations above ``L0 + val_margin`` end the run
    (cause ``val_above_l0_sustained``): a way to spare compute on hopeless runs. 0 (default) = off.
    ``spike_factor``: train CE above ``spike_factor`` x its running minimum for ``spike_patience``
    consecutive steps after warmup ends the run (0, the default, disables it).
    """

    l0: L0Convention | float = field(
        default="ln_v",
        metadata=setting(
            "L0: 'ln_v' (ln V, the paper's text), 'initial' (measured before step 1) or a number > 0 "
            "(the official notebook's 10.83).",
            spec="divergence",
            flag="--l0",
        ),
    )
    val_margin: float = field(
        default=1.0,
        metadata=setting("Nats above L0 that set the recorded flag above_l0_step.", ge=0, spec="divergence"),
    )
    sustained_evals: int = field(
        default=0,
        metadata=setting(
            "End the run after K consecutive evaluations above L0 + 1 nat (0: never; it is only recorded).",
            ge=0,
            spec="divergence",
            flag="--sustained-evals",
        ),
    )
    spike_factor: float = field(
        default=0.0,
        metadata=setting(
            "End the run when train CE stays above this multiple of its running minimum (0: never).",
            ge=0,
            spec="divergence",
        ),
    )
    spike_patience: int = field(
        default=20, metadata=setting("Consecutive steps spike_factor must hold.", ge=1, spec="divergence")
    )

    def __post_init__(self) -> None:
        # A negative margin is refused at the edges only: tests of the flag use one to raise it at once.
        check(self, "divergence.", unchecked=("val_margin", "l0"))
        problem = l0_problem(self.l0)
        if problem:
            raise ValueError(f"divergence.l0 {problem}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(_DictMixin):
    """Everything that determines one training run (and therefore its config hash)."""

    model: str = field(
        default="tiny", metadata=setting("Model preset (see `lossweep presets --models`).", flag="--preset")
    )
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    steps: int = field(default=200, metadata=setting("Optimizer steps.", ge=1, flag="--steps"))
    eval_interval: int = field(
        default=50, metadata=setting("Steps between evaluations.", ge=1, spec="budget", flag="--eval-interval")
    )
    # test evaluations ride on reports: a multiple of eval_interval
    test_interval: int = field(
        default=0,
        metadata=setting(
            "Steps between test evaluations besides the one at the end (0: only at the end); a multiple of "
            "--eval-interval.",
            ge=0,
            spec="budget",
            flag="--test-interval",
        ),
    )
    seed: int = field(default=0, metadata=setting("Seed of the initial weights and the batch order.", flag="--seed"))
    # bf16 = autocast, as in the official code. ``precision`` is the body's; ``head_precision`` the LM
    # head's logits (None = the body's), so "bf16 body, fp32 head" isolates the logits' rounding.
    precision: Precision = field(
        default="fp32",
        metadata=setting(
            "'fp32', or 'bf16' autocast (the paper's setting, LM head included).", spec="", flag="--precision"
        ),
    )
    head_precision: Precision | None = field(
        default=None,
        metadata=setting(
            "LM head's precision, 'fp32' or 'bf16' (default: --precision's).", spec="", flag="--head-precision"
        ),
    )
    # TF32 tensor cores for float32 matmuls on CUDA (the official code turns them on); set by the
    # engine for every entry point alike, a no-op on CPU.
    allow_tf32: bool = field(
        default=True,
        metadata=setting(
            "TF32 for float32 matmuls on CUDA (the official code's setting).", spec="", flag="--tf32/--no-tf32"
        ),
    )
    checkpoint_interval: int = 0  # steps between checkpoints; 0 = only at the end under Ray, never locally
    checkpoint_keep: int = 2
    compile: bool | None = field(
        default=None,
        metadata=setting("torch.compile each trial's model; null = on for GPU trials, off on CPU.", spec=""),
    )
    use_gpu: bool = field(
        default=False, metadata=setting("Train on a CUDA GPU when one is available.", flag="--gpu/--cpu")
    )

    def __post_init__(self) -> None:
        check(self)
        if self.test_interval and self.test_interval % self.eval_interval:
            raise ValueError(
                f"test_interval must be 0 or a multiple of eval_interval ({self.eval_interval}), "
                f"got {self.test_interval}"
            )
        if self.checkpoint_interval < 0:
            raise ValueError(f"checkpoint_interval must be >= 0, got {self.checkpoint_interval}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true, false or null (auto), got {self.compile!r}")
        if self.optim.warmup_steps is None:
            optim = dataclasses.replace(self.optim, warmup_steps=default_warmup(self.steps))
            object.__setattr__(self, "optim", optim)

    @property
    def resolved_head_precision(self) -> Precision:
        return self.head_precision or self.precision

    def config_hash(self) -> str:
        """Stable short hash of the resolved config (identical configs share it across machines)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_NESTED.update(
    {
        ("TrainConfig", "data"): DataConfig,
        ("TrainConfig", "optim"): OptimConfig,
        ("TrainConfig", "loss"): LossConfig,
        ("TrainConfig", "divergence"): DivergenceConfig,
    }
)
