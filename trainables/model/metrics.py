"""Diagnostics of a run's logits and output embeddings (the quantities the OEC paper tracks).

Names follow docs/sweep-dir.md (``metrics.parquet``):

- ``logits_mean``, ``logits_std``, ``logits_absmax``: global statistics over every vocabulary entry
  of every valid token (labels != -100); ``logits_std`` is the population standard deviation.
  ``logits_mean`` equals the official code's ``logits_mean_mean`` (a mean of equal-sized means).
- ``logits_mean_absmax``, ``logits_mean_std``: the OEC paper's statistics, as its official code
  computes them (``train.py``, ``analyze_final_hidden_states``): the mean over valid tokens of the
  per-token ``max_i |l_i|``, and of the per-token standard deviation over the vocabulary (Bessel-
  corrected, ``torch.std``'s default). Compare these, not the global ones, with the paper's figures:
  a global max is the largest logit anywhere, the paper's is a typical token's largest.
- ``log_z_mean``, ``log_z_sq_mean``: mean over valid tokens of ``log Z`` and ``(log Z)^2``
  (the z-loss's quantity; ``log Z`` drifts with the mean logit).
- ``mu_norm``: ``||μ||``, the norm of the column mean of the output embeddings ``W_out`` ``[V, H]``
  (the mean logit is ``μ·h``).
- ``emb_anisotropy``: mean pairwise cosine similarity of the output embeddings over ``i != j``,
  from ``Σ_{i≠j} u_i·u_j = ||Σ_i u_i||^2 - Σ_i ||u_i||^2`` (``u_i = e_i/||e_i||``): O(V·H), no V×V matrix.
- ``grad_norm``: global L2 norm of the gradients.

Everything returns plain floats (one host sync per call); sums are accumulated in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.losses.cross_entropy import IGNORE_INDEX, upcast

LOGIT_KEYS = (
    "logits_mean",
    "logits_std",
    "logits_absmax",
    "logits_mean_absmax",
    "logits_mean_std",
    "log_z_mean",
    "log_z_sq_mean",
)
EMBEDDING_KEYS = ("mu_norm", "emb_anisotropy")


class LogitStats:
    """Accumulates logit statistics over several batches; ``compute()`` gives the exact values over
    all valid tokens seen (each token weighs the same), without keeping any batch."""

    def __init__(self) -> None:
        # n, Σ row_mean, Σ row_mean², Σ row_var, Σ logZ, Σ logZ², Σ row_absmax, Σ row_std (Bessel)
        self._sums: Tensor | None = None
        self._absmax: Tensor | None = None

    @torch.no_grad()
    def add(self, logits: Tensor, labels: Tensor) -> None:
        """``logits`` ``[..., V]`` and ``labels`` ``[...]`` (-100 = ignored)."""
        if logits.shape[:-1] != labels.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree")
        x = upcast(logits.detach()).reshape(-1, logits.shape[-1])
        valid = labels.reshape(-1) != IGNORE_INDEX
        x = x[valid] if not bool(valid.all()) else x
        if x.shape[0] == 0:
            return
        var, mean = torch.var_mean(x, dim=-1, correction=0)  # per token, over the vocabulary
        log_z = torch.logsumexp(x, dim=-1)
        row_absmax = torch.maximum(x.amax(dim=-1), -x.amin(dim=-1))  # per token
        V = x.shape[-1]
        row_std = (var * (V / (V - 1))).sqrt() if V > 1 else torch.zeros_like(var)  # torch.std's default
        mean, var, log_z = mean.double(), var.double(), log_z.double()
        sums = torch.stack(
            [
                torch.tensor(float(x.shape[0]), dtype=torch.float64, device=x.device),
                mean.sum(),
                mean.square().sum(),
                var.sum(),
                log_z.sum(),
                log_z.square().sum(),
                row_absmax.double().sum(),
                row_std.double().sum(),
            ]
        )
        absmax = row_absmax.amax().double()
        self._sums = sums if self._sums is None else self._sums + sums
        self._absmax = absmax if self._absmax is None else torch.maximum(self._absmax, absmax.to(self._absmax))

    def compute(self) -> dict[str, float]:
        """The logit metrics of ``LOGIT_KEYS``; all 0.0 when no valid token was seen."""
        if self._sums is None or self._absmax is None:
            return dict.fromkeys(LOGIT_KEYS, 0.0)
        n, s_mean, s_mean2, s_var, s_lz, s_lz2, s_rowmax, s_rowstd = self._sums.tolist()
        absmax = float(self._absmax)
        if n == 0:
            return dict.fromkeys(LOGIT_KEYS, 0.0)
        mean = s_mean / n
        # law of total variance over tokens of equal size V: within-token + between-token variance
        var = s_var / n + max(0.0, s_mean2 / n - mean * mean)
        return {
            "logits_mean": mean,
            "logits_std": math.sqrt(var),
            "logits_absmax": absmax,
            "logits_mean_absmax": s_rowmax / n,
            "logits_mean_std": s_rowstd / n,
            "log_z_mean": s_lz / n,
            "log_z_sq_mean": s_lz2 / n,
        }


def logit_stats(logits: Tensor, labels: Tensor) -> dict[str, float]:
    """The logit metrics of ``LOGIT_KEYS`` over the valid tokens of one batch."""
    stats = LogitStats()
    stats.add(logits, labels)
    return stats.compute()


@torch.no_grad()
def mu_norm(w_out: Tensor) -> float:
    """``||mean(W_out, dim=0)||`` for ``W_out`` ``[V, H]``."""
    _check_w_out(w_out)
    return float(torch.linalg.vector_norm(w_out.detach().mean(dim=0, dtype=torch.float64)))


@torch.no_grad()
def emb_anisotropy(w_out: Tensor) -> float:
    """Mean cosine similarity over pairs ``i != j`` of rows of ``W_out`` ``[V, H]`` (a zero row counts as
    cosine 0); 0.0 when ``V < 2``. O(V·H) time and memory."""
    _check_w_out(w_out)
    V = w_out.shape[0]
    if V < 2:
        return 0.0
    u = F.normalize(upcast(w_out.detach()), dim=1)
    s = u.sum(dim=0, dtype=torch.float64)
    pair_sum = s.dot(s) - u.square().sum(dtype=torch.float64)  # Σ_{i≠j} u_i·u_j
    return float(pair_sum) / (V * (V - 1))


def embedding_stats(w_out: Tensor) -> dict[str, float]:
    """``mu_norm`` and ``emb_anisotropy`` of the output embeddings."""
    return {"mu_norm": mu_norm(w_out), "emb_anisotropy": emb_anisotropy(w_out)}


@torch.no_grad()
def grad_norm(parameters: Iterable[Tensor]) -> float:
    """Global L2 norm of the gradients of ``parameters`` (those without a gradient are skipped); the
    same number ``torch.nn.utils.clip_grad_norm_`` returns before clipping."""
    norms = [torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float64) for p in parameters if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms])))


def eval_diagnostics(*, logits: Tensor, labels: Tensor, w_out: Tensor) -> dict[str, float]:
    """Logit metrics of one evaluation batch plus the output-embedding metrics (names in the module doc)."""
    return {**logit_stats(logits, labels), **embedding_stats(w_out)}


def _check_w_out(w_out: Tensor) -> None:
    if w_out.dim() != 2:
        raise ValueError(f"w_out must be [V, H], got shape {tuple(w_out.shape)}")
