"""Configuration of one training run.

Frozen keyword-only dataclasses: hashable, safe to share between the driver and Ray workers, and
round-trippable through plain dicts (``to_dict``/``from_dict``) so they travel as JSON in manifests,
Tune configs and Ray Jobs. Validation of user input happens at the edges (CLI, sweep spec); the
checks here only guard invariants the training loop relies on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from trainables.losses.config import LossConfig

Precision = Literal["fp32", "bf16"]
#: Training windows: an epoch permutation (each window once per epoch) or drawn at random with
#: replacement (the official OEC code's order); ``trainables.data.sampler``.
Sampling = Literal["epoch", "random"]
SAMPLINGS: tuple[str, ...] = ("epoch", "random")
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


@dataclass(frozen=True, kw_only=True)
class DataConfig(_DictMixin):
    """Where tokens come from and how they are batched.

    ``batch_size`` is the *global* batch (sequences per optimizer step summed over all ranks), so a
    2-worker run with batch B follows the same trajectory as a 1-worker run with batch B.

    ``eval_tokens``: predicted tokens of each periodic evaluation on the validation split;
    ``test_tokens``: of the test evaluation. Both are windows spread over the whole split (capped by its
    size), the same for every trial, each evaluation with its standard error over windows.
    ``sampling``: training windows in an epoch permutation (``epoch``) or at random with replacement.
    """

    corpus: str = "stdlib"  # "stdlib" | "text:PATH" | "parquet:PATH" | "shards:DIR"
    tokenizer: str = "bytes"  # "bytes" | "bpe:N" | "hf:PATH"; a shards: corpus brings its own
    column: str = "tokens"  # token-id column for parquet corpora
    seq_len: int = 128
    batch_size: int = 16
    eval_tokens: int = DEFAULT_EVAL_TOKENS
    test_tokens: int = DEFAULT_TEST_TOKENS
    sampling: Sampling = "epoch"
    cache_dir: str | None = None  # default: $LOSSWEEP_CACHE_DIR or ~/.cache/lossweep

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise ValueError(f"data.seq_len must be >= 2, got {self.seq_len}")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.eval_tokens < 1:
            raise ValueError(f"data.eval_tokens must be >= 1, got {self.eval_tokens}")
        if self.test_tokens < 1:
            raise ValueError(f"data.test_tokens must be >= 1, got {self.test_tokens}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"data.sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")


@dataclass(frozen=True, kw_only=True)
class OptimConfig(_DictMixin):
    """AdamW with linear warmup then cosine decay to ``min_lr`` (the OEC paper's recipe)."""

    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 0
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.min_lr < 0:
            raise ValueError(f"optim.min_lr must be >= 0, got {self.min_lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")


L0Convention = Literal["ln_v", "initial"]
L0_CONVENTIONS: tuple[str, ...] = ("ln_v", "initial")


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

    l0: L0Convention | float = "ln_v"
    val_margin: float = 1.0
    sustained_evals: int = 0
    spike_factor: float = 0.0
    spike_patience: int = 20

    def __post_init__(self) -> None:
        problem = l0_problem(self.l0)
        if problem:
            raise ValueError(f"divergence.l0 {problem}")
        if self.sustained_evals < 0:
            raise ValueError(f"divergence.sustained_evals must be >= 0, got {self.sustained_evals}")
        if self.spike_factor < 0:
            raise ValueError(f"divergence.spike_factor must be >= 0, got {self.spike_factor}")
        if self.spike_patience < 1:
            raise ValueError(f"divergence.spike_patience must be >= 1, got {self.spike_patience}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(_DictMixin):
    """Everything that determines one training run (and therefore its config hash)."""

    model: str = "tiny"  # a preset name from trainables.model.presets
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    steps: int = 200
    eval_interval: int = 50
    # steps between evaluations on the test split besides the one at the end (0 = only at the end); a
    # multiple of eval_interval, since test evaluations ride on reports
    test_interval: int = 0
    seed: int = 0
    # bf16 = autocast, as in the official code. ``precision`` is the body's; ``head_precision`` the LM
    # head's logits (None = the body's), so "bf16 body, fp32 head" isolates the logits' rounding.
    precision: Precision = "fp32"
    head_precision: Precision | None = None
    # TF32 tensor cores for float32 matmuls on CUDA (the official code turns them on); set by the
    # engine for every entry point alike, a no-op on CPU.
    allow_tf32: bool = True
    checkpoint_interval: int = 0  # steps between checkpoints; 0 = only at the end under Ray, never locally
    checkpoint_keep: int = 2
    compile: bool | None = None  # torch.compile the model; None = on when training on CUDA (trainables.model.compile)
    use_gpu: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.eval_interval < 1:
            raise ValueError(f"eval_interval must be >= 1, got {self.eval_interval}")
        if self.test_interval < 0 or (self.test_interval and self.test_interval % self.eval_interval):
            raise ValueError(
                f"test_interval must be 0 or a multiple of eval_interval ({self.eval_interval}), "
                f"got {self.test_interval}"
            )
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.head_precision not in (None, "fp32", "bf16"):
            raise ValueError(f"head_precision must be 'fp32', 'bf16' or None, got {self.head_precision!r}")
        if self.checkpoint_interval < 0:
            raise ValueError(f"checkpoint_interval must be >= 0, got {self.checkpoint_interval}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true, false or null (auto), got {self.compile!r}")

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
