"""The shape of the GPT (``ModelConfig``) and its analytic parameter counts.

Torch-free on purpose: the service and the sweep spec size and validate models without loading torch.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from trainables.train.settings import check, setting

GPT2_VOCAB = 50304  # GPT-2's 50257 padded to a multiple of 64, as in nanoGPT and the OEC code
BYTES_VOCAB = 257  # 256 bytes + <|endoftext|> (the default tokenizer)
MLP_MULTIPLE = 256  # the official code rounds the SwiGLU hidden width up to a multiple of this

#: Precision of the body or of the LM head: float32, or bfloat16 autocast (the official code's).
Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)

Init = Literal["oec", "legacy"]
#: ``oec``: the official code's initialisation (``trainables.model.gpt.GPT.reset_parameters`` says how);
#: ``legacy``: this project's earlier one (Xavier per q/k/v block and on every projection, N(0, 1/d)
#: embeddings, tied tensor drawn as an embedding), kept to reproduce results recorded with it.
INITS: tuple[str, ...] = typing.get_args(Init)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Shape of the GPT. ``vocab_size`` is a default: a training run sets it from its tokenizer."""

    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int = BYTES_VOCAB
    mlp_hidden: int | None = field(  # None = the official rule (see hidden_dim)
        default=None,
        metadata=setting(
            "SwiGLU hidden width (default: the official 256 * ceil(int(8d/3) / 256)).", ge=1, flag="--mlp-hidden"
        ),
    )
    qk_norm: bool = True
    tie_weights: bool = field(
        default=False,
        metadata=setting(
            "Tie the LM head to the input embedding (one tensor; the paper's soft-capping runs). "
            "Default: untied, as the paper's main runs.",
            flag="--tie-weights/--untied",
        ),
    )
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    init: Init = field(
        default="oec",
        metadata=setting("'oec' (the official code's initialisation) or 'legacy' (the earlier one).", flag="--init"),
    )

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
        if not self.rope_base > 0:
            raise ValueError(f"model.rope_base must be > 0, got {self.rope_base}")
        check(self, "model.")

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
        """Exact number of distinct trainable parameters of ``trainables.model.gpt.GPT`` with this shape."""
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

