"""Model presets: named GPT shapes, with analytic parameter counts.

Torch-free on purpose: the service and the sweep spec list and validate presets without loading torch.

The architecture (``trainables.model.gpt.GPT``) follows the OEC paper's code: RoPE, SwiGLU, pre-norm,
qk-norm, final norm, no biases, and the official code's SwiGLU width ``256 · ceil(floor(8d/3) / 256)``.
The ``oec-*`` shapes are the paper's (docs/papers.md §1, 4 heads); their names count one ``V x d`` embedding
matrix plus the blocks (``ModelConfig.paper_params``: as if tied), which is how the paper's 16M…221M
figures come out at V = 50304. With the default untied head the model holds a second ``V x d``
matrix, so its total (``num_params``) is larger than the name says. The ``oec-*-cpu`` shapes are the same
five scaled down alike (depth and width in the paper's ratios, 27k to 1.2M non-embedding parameters), for
a five-size study on a CPU; reports set each beside the paper's run at the size it is scaled from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from trainables.model.config import GPT2_VOCAB, ModelConfig


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


def _cpu_scaled(paper: ModelConfig) -> ModelConfig:
    """A paper shape scaled to two CPU cores: a third of its depth, a seventh of its width rounded to a
    multiple of 8 (so that 4 heads keep an even size for RoPE), the data's vocabulary. The SwiGLU width
    follows the official rule at a granularity of 32 instead of 256, which at these widths would make the
    MLP several times too wide."""
    width = 8 * round(paper.n_embd / 7 / 8)
    hidden = 32 * math.ceil((8 * width // 3) / 32)
    return ModelConfig(n_layer=paper.n_layer // 3, n_embd=width, n_head=paper.n_head, mlp_hidden=hidden)


def oec_16m_cpu() -> ModelConfig:
    return _cpu_scaled(oec_16m())


def oec_29m_cpu() -> ModelConfig:
    return _cpu_scaled(oec_29m())


def oec_57m_cpu() -> ModelConfig:
    return _cpu_scaled(oec_57m())


def oec_109m_cpu() -> ModelConfig:
    return _cpu_scaled(oec_109m())


def oec_221m_cpu() -> ModelConfig:
    return _cpu_scaled(oec_221m())


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
    "oec-16m-cpu": oec_16m_cpu,
    "oec-29m-cpu": oec_29m_cpu,
    "oec-57m-cpu": oec_57m_cpu,
    "oec-109m-cpu": oec_109m_cpu,
    "oec-221m-cpu": oec_221m_cpu,
}


#: The paper's own five shapes, smallest first (not their CPU-scaled copies).
PAPER_PRESETS: tuple[str, ...] = ("oec-16m", "oec-29m", "oec-57m", "oec-109m", "oec-221m")


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


def model_for_data(name: str, overrides: Mapping[str, Any], data_vocab: int | None) -> ModelConfig:
    """The model a run trains: the preset with its overrides, its vocabulary the data's (``data_vocab``,
    ``trainables.data.vocabulary``) unless an override sets a larger one. ``data_vocab`` None (ids not
    known before they are read): the override, else the preset's own."""
    rest = dict(overrides)
    vocab = rest.pop("vocab_size", None)
    if vocab is not None and data_vocab is not None and int(vocab) < data_vocab:
        raise ValueError(f"model_overrides.vocab_size={vocab} is smaller than the data's vocabulary ({data_vocab})")
    chosen = vocab if vocab is not None else data_vocab
    return model_preset(name, **rest, **({"vocab_size": int(chosen)} if chosen is not None else {}))


def list_model_presets(vocab_size: int | None = None) -> dict[str, tuple[ModelConfig, int]]:
    """Every preset with its parameter count; ``vocab_size`` replaces each preset's default vocabulary."""
    out: dict[str, tuple[ModelConfig, int]] = {}
    for name in MODEL_PRESETS:
        cfg = model_preset(name) if vocab_size is None else model_preset(name, vocab_size=vocab_size)
        out[name] = (cfg, cfg.num_params())
    return out
