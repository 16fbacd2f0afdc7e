"""Model presets: named GPT shapes, with analytic parameter counts.

Torch-free on purpose: the service and the sweep spec list and validate presets without loading torch.

The architecture (``trainables.model.GPT``) follows the OEC paper's code: RoPE, SwiGLU, pre-norm,
qk-norm, final norm, no biases, and the official code's SwiGLU width ``256 · ceil(floor(8d/3) / 256)``.
The ``oec-*`` shapes are the paper's (PAPERS.md §1, 4 heads); their names count one ``V x d`` embedding
matrix plus the blocks (``ModelConfig.paper_params``: as if tied), which is how the paper's 16M…221M
figures come out at V = 50304. With the default untied head the model holds a second ``V x d``
matrix, so its total (``num_params``) is larger than the name says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

GPT2_VOCAB = 50304  # GPT-2's 50257 padded to a multiple of 64, as in nanoGPT and the OEC code
BYTES_VOCAB = 257  # 256 bytes + <|endoftext|> (the default tokenizer)
MLP_MULTIPLE = 256  # the official code rounds the SwiGLU hidden width up to a multiple of this

Init = Literal["oec", "legacy"]
#: ``oec``: the official code's initialisation (``trainables.model.GPT.reset_parameters`` says how);
#: ``legacy``: this project's earlier one (Xavier per q/k/v block and on every projection, N(0, 1/d)
#: embeddings, tied tensor drawn as an embedding), kept to reproduce results recorded with it.
INITS: tuple[str, ...] = ("oec", "legacy")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Shape of the GPT. ``vocab_size`` is a default: a training run sets it from its tokenizer."""

    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int = BYTES_VOCAB
    mlp_hidden: int | None = None  # SwiGLU hidden width; None = the official rule (see hidden_dim)
    qk_norm: bool = True
    tie_weights: bool = False
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    init: Init = "oec"

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_embd", "n_head", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"model head size n_embd/n_head = {self.n_embd // self.n_head} must be even for rotary embeddings"
            )
        if self.mlp_hidden is not None and self.mlp_hidden < 1:
            raise ValueError(f"model.mlp_hidden must be a positive integer or None, got {self.mlp_hidden!r}")
        if not self.rope_base > 0:
            raise ValueError(f"model.rope_base must be > 0, got {self.rope_base}")
        if self.init not in INITS:
            raise ValueError(f"model.init must be one of {', '.join(INITS)}, got {self.init!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden_dim(self) -> int:
        """SwiGLU hidden width: ``mlp_hidden`` if set, else as the official code computes it from a
        4d MLP: ``int(2 · 4d / 3)`` rounded up to a multiple of 256 (597 → 768 at d = 224)."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        raw = (8 * self.n_embd) // 3
        return -(-raw // MLP_MULTIPLE) * MLP_MULTIPLE

    def num_params(self) -> int:
        """Exact number of distinct trainable parameters of ``trainables.model.GPT`` with this shape."""
        return self.embedding_params() + self.non_embedding_params()

    def embedding_params(self) -> int:
        """The ``V x d`` matrices: the input embedding, and the LM head unless tied."""
        return self.vocab_size * self.n_embd * (1 if self.tie_weights else 2)

    def non_embedding_params(self) -> int:
        """Everything but the ``V x d`` matrices: the blocks and the final norm."""
        d, h = self.n_embd, self.hidden_dim
        per_layer = (
            2 * d  # the two pre-norm weights
            + 4 * d * d  # q, k, v, output projection
            + (2 * self.head_dim if self.qk_norm else 0)
            + 3 * d * h  # SwiGLU: gate, up, down
        )
        return self.n_layer * per_layer + d  # + final norm

    def paper_params(self) -> int:
        """As the OEC paper names its models: the non-embedding parameters plus ONE ``V x d`` matrix
        (as if tied), whatever ``tie_weights`` says: 15.6M for "16M" at V = 50304."""
        return self.non_embedding_params() + self.vocab_size * self.n_embd

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ModelConfig: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


def tiny() -> ModelConfig:
    """About 0.59M parameters at V=257: for tests and smoke runs."""
    return ModelConfig(n_layer=2, n_embd=128, n_head=4)


def cpu_small() -> ModelConfig:
    """About 3.5M parameters at V=257 (3.35M with the earlier 704-wide SwiGLU, ``mlp_hidden=704``):
    learns visibly within minutes on two CPU cores."""
    return ModelConfig(n_layer=4, n_embd=256, n_head=4)


def oec_16m() -> ModelConfig:
    return ModelConfig(n_layer=6, n_embd=224, n_head=4, vocab_size=GPT2_VOCAB)


def oec_29m() -> ModelConfig:
    return ModelConfig(n_layer=9, n_embd=320, n_head=4, vocab_size=GPT2_VOCAB)


def oec_57m() -> ModelConfig:
    return ModelConfig(n_layer=12, n_embd=480, n_head=4, vocab_size=GPT2_VOCAB)


def oec_109m() -> ModelConfig:
    return ModelConfig(n_layer=15, n_embd=640, n_head=4, vocab_size=GPT2_VOCAB)


def oec_221m() -> ModelConfig:
    return ModelConfig(n_layer=21, n_embd=832, n_head=4, vocab_size=GPT2_VOCAB)


def gpt2_124m() -> ModelConfig:
    """GPT-2 small's shape (12 x 768, 12 heads, tied head) in this architecture: 124M at V=50304."""
    return ModelConfig(n_layer=12, n_embd=768, n_head=12, vocab_size=GPT2_VOCAB, tie_weights=True)


MODEL_PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "tiny": tiny,
    "cpu-small": cpu_small,
    "oec-16m": oec_16m,
    "oec-29m": oec_29m,
    "oec-57m": oec_57m,
    "oec-109m": oec_109m,
    "oec-221m": oec_221m,
    "gpt2-124m": gpt2_124m,
}


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """The preset ``name`` with ``overrides`` (ModelConfig field names) applied."""
    try:
        factory = MODEL_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; choose one of: {', '.join(MODEL_PRESETS)}") from None
    base = factory()
    if not overrides:
        return base
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown model override(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(base, **overrides)


def list_model_presets(vocab_size: int | None = None) -> dict[str, tuple[ModelConfig, int]]:
    """Every preset with its parameter count; ``vocab_size`` replaces each preset's default vocabulary."""
    out: dict[str, tuple[ModelConfig, int]] = {}
    for name in MODEL_PRESETS:
        cfg = model_preset(name) if vocab_size is None else model_preset(name, vocab_size=vocab_size)
        out[name] = (cfg, cfg.num_params())
    return out
