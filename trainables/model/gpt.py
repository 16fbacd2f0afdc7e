"""Decoder-only GPT as in the OEC paper's code (nanoGPT lineage).

Rotary position embeddings, SwiGLU MLP, pre-norm blocks, optional qk-norm, final norm, no biases
anywhere, optional weight tying, initialised as the official code does it (``ModelConfig.init``,
``GPT.reset_parameters``). Norms are LayerNorm without bias (the paper's choice, not RMSNorm).

``forward(idx)`` returns ``(hidden, logits)``: ``hidden`` is the final norm's output (the LM head's
input, which SimReg regularises), ``logits`` the head's output, passed through ``logit_transform`` when
one is given (the configured loss's logit transforms, e.g. soft-capping; ``losses.combine.logit_transform``).

Shapes: B = batch, T = sequence length, C = n_embd, nh = n_head, hs = head size, V = vocab size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from trainables.model.config import PRECISIONS, ModelConfig, Precision


class LayerNorm(nn.Module):
    """LayerNorm with a weight and no bias."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, None, self.eps)


class Rotary(nn.Module):
    """Rotary embeddings (rotate-half form); cos/sin tables are cached per (T, device, dtype), not saved."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self._cache: tuple[int, torch.device, torch.dtype, torch.Tensor, torch.Tensor] | None = None

    def _tables(self, T: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        c = self._cache
        if c is None or c[0] < T or c[1] != device or c[2] != dtype:
            t = torch.arange(T, device=device, dtype=torch.float32)
            freqs = torch.outer(t, self.inv_freq.to(device))  # (T, hs/2)
            emb = torch.cat((freqs, freqs), dim=-1)  # (T, hs)
            c = (T, device, dtype, emb.cos().to(dtype), emb.sin().to(dtype))
            self._cache = c
        return c[3][:T], c[4][:T]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, nh, T, hs)
        cos, sin = self._tables(x.size(-2), x.device, x.dtype)  # (T, hs) each
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat((-x2, x1), dim=-1)
        return x * cos + rotated * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.head_dim
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)  # q, k, v stacked
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.q_norm = LayerNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = LayerNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.rotary = Rotary(cfg.head_dim, cfg.rope_base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y)


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.hidden = cfg.hidden_dim
        self.c_fc = nn.Linear(cfg.n_embd, 2 * self.hidden, bias=False)  # gate and up, stacked
        self.c_proj = nn.Linear(self.hidden, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).split(self.hidden, dim=-1)  # 2 x (B, T, hidden)
        return self.c_proj(F.silu(gate) * up)  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The model. ``precision`` is the body's: ``"bf16"`` runs it under bf16 autocast (the official
    code's setting), ``"fp32"`` keeps it float32. ``head_precision`` is the LM head's (None = the
    body's): under ``"bf16"`` the logits come out as bf16 and the loss functions upcast them, so the
    rounding of the head, where the paper's instability lives, is what the loss sees; ``"fp32"`` computes
    them from the float32 hidden state and weight. ``logit_transform`` (the loss's logit transforms, e.g.
    soft-capping) is applied after the head, always in float32 (a bf16 tanh would add its own rounding on
    top of the head's)."""

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        precision: Precision = "fp32",
        head_precision: Precision | None = None,
        logit_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if head_precision is not None and head_precision not in PRECISIONS:
            raise ValueError(f"head_precision must be one of {', '.join(PRECISIONS)} or None, got {head_precision!r}")
        self.config = cfg
        self.precision: Precision = precision
        self.head_precision: Precision = head_precision or precision
        self.logit_transform = logit_transform
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = LayerNorm(cfg.n_embd, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters(generator)

    @property
    def w_out(self) -> nn.Parameter:
        """Output embeddings ``[V, C]`` (the LM head's weight; the input embeddings too when tied)."""
        return self.lm_head.weight

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initial weights by ``ModelConfig.init``; norms start at 1 either way.

        ``"oec"``, as the official code (``nanoGPT/model.py``): Xavier-normal on every linear map as it
        stands, so the stacked q/k/v ``[3C, C]`` is ONE matrix (std ``sqrt(2/(4C))``); SwiGLU's gate and
        up are two separate ``[h, C]`` matrices there, so they get Xavier block by block here; the
        attention output projection is then redrawn from ``N(0, 0.02/sqrt(2·n_layer))`` (the official
        rule hits names ending in ``c_proj.weight``, which in its SwiGLU model is that one only); the
        embedding is ``N(0, 1/sqrt(C))``; the head is initialised after it, so with tying the shared
        tensor ends Xavier ``sqrt(2/(V+C))``.
        ``"legacy"``: this project's earlier init (Xavier per q/k/v block, Xavier on both output
        projections, tied tensor drawn as an embedding); kept to reproduce results recorded with it.
        """
        legacy = self.config.init == "legacy"
        for module in self.modules():
            if isinstance(module, CausalSelfAttention):
                if legacy:
                    for part in module.c_attn.weight.chunk(3, dim=0):
                        nn.init.xavier_normal_(part, generator=generator)
                    nn.init.xavier_normal_(module.c_proj.weight, generator=generator)
                else:
                    nn.init.xavier_normal_(module.c_attn.weight, generator=generator)
                    std = 0.02 / math.sqrt(2 * self.config.n_layer)
                    nn.init.normal_(module.c_proj.weight, mean=0.0, std=std, generator=generator)
            elif isinstance(module, SwiGLU):
                for part in module.c_fc.weight.chunk(2, dim=0):
                    nn.init.xavier_normal_(part, generator=generator)
                nn.init.xavier_normal_(module.c_proj.weight, generator=generator)
            elif isinstance(module, LayerNorm):
                module.weight.fill_(1.0)
        if legacy:  # the earlier draw order, so a seed gives the weights it gave then
            nn.init.xavier_normal_(self.lm_head.weight, generator=generator)
            nn.init.normal_(self.wte.weight, mean=0.0, std=1.0 / math.sqrt(self.config.n_embd), generator=generator)
            return
        nn.init.normal_(self.wte.weight, mean=0.0, std=1.0 / math.sqrt(self.config.n_embd), generator=generator)
        nn.init.xavier_normal_(self.lm_head.weight, generator=generator)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # idx: (B, T) token ids
        device = idx.device.type
        body = torch.autocast(device_type=device, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        with body:
            x = self.wte(idx)  # (B, T, C)
            for block in self.blocks:
                x = block(x)  # (B, T, C)
            hidden = self.ln_f(x)  # (B, T, C)
        if self.head_precision == "bf16":
            with torch.autocast(device_type=device, dtype=torch.bfloat16):
                logits = self.lm_head(hidden)  # (B, T, V) bf16
        else:
            with torch.autocast(device_type=device, enabled=False):
                logits = self.lm_head(hidden.float())  # (B, T, V) float32
        if self.logit_transform is not None:
            with torch.autocast(device_type=device, enabled=False):
                logits = self.logit_transform(logits.float())  # (B, T, V) float32
        return hidden, logits
