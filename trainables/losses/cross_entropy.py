"""Cross entropy over valid tokens, sharing one logsumexp with the z-loss.

CE of a token is ``log Z - l_target`` and the z-loss is ``(log Z)^2``: both need the same logsumexp
over the vocabulary, the only O(N·V) work. ``log_z_and_target`` computes it once (plus the O(N)
gather of the target logit) in a custom autograd function whose backward writes the gradient of
the logits in one pass: ``softmax(l) · dL/dlogZ`` plus ``dL/dl_target`` scattered at the targets.
An unfused z-loss (a second logsumexp next to ``F.cross_entropy``) costs +23-40 % per step at
V=4096 on CPU (docs/papers.md §3); this one costs an O(N) reduction.

Precision: half-precision logits are upcast to float32 inside (values and gradient), so the rounding
of a bf16 head is preserved while the loss math runs in float32; float64 stays float64 (gradcheck).
The backward keeps the head's logits as given (bf16 stays bf16 in memory) and upcasts again.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100


def upcast(x: Tensor) -> Tensor:
    """``x`` in at least float32 (bf16/fp16 are upcast; float32 and float64 are left as they are)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class _LogZAndTarget(torch.autograd.Function):
    """``(logsumexp(x, -1), x[target])`` for ``x`` ``[N, V]``; target logit is 0 at ignored rows."""

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        x = upcast(logits)
        valid = labels != IGNORE_INDEX
        safe = torch.where(valid, labels, 0)
        log_z = torch.logsumexp(x, dim=-1)  # [N]
        target = torch.where(valid, x.gather(1, safe.unsqueeze(1)).squeeze(1), 0.0)  # [N]
        ctx.save_for_backward(logits, log_z, safe, valid)
        return log_z, target

    @staticmethod
    def backward(ctx, g_log_z: Tensor, g_target: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        logits, log_z, safe, valid = ctx.saved_tensors
        x = upcast(logits)
        # one [N, V] buffer: softmax(x) * g_log_z, then the target column (in place when x is a copy)
        grad = x.sub_(log_z.unsqueeze(1)) if x is not logits else x - log_z.unsqueeze(1)
        grad.exp_().mul_(g_log_z.unsqueeze(1))
        # an ignored row gets exactly 0: its softmax may be NaN (an inf/NaN logit in padding) and NaN·0 is NaN
        grad.masked_fill_(~valid.unsqueeze(1), 0.0)
        grad.scatter_add_(1, safe.unsqueeze(1), torch.where(valid, g_target, 0.0).unsqueeze(1))
        return grad.to(logits.dtype), None


def log_z_and_target(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token ``(log Z, target logit, valid)`` over the flattened tokens.

    ``logits`` ``[..., V]``, ``labels`` ``[...]`` (-100 = ignored). Returns three ``[N]`` tensors:
    ``log Z`` (float32 or float64; 0 at ignored tokens), the target logit (0 at ignored tokens) and
    the bool mask of valid tokens. Differentiable with respect to ``logits``.
    """
    if logits.shape[:-1] != labels.shape:
        got = f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        raise ValueError(f"logits and labels disagree: want [..., V] and [...], got {got}")
    logits2d = logits.reshape(-1, logits.shape[-1])
    labels1d = labels.reshape(-1).long()
    log_z, target = _LogZAndTarget.apply(logits2d, labels1d)
    valid = labels1d != IGNORE_INDEX
    # masking through where (not a product) keeps a non-finite logZ of a padded row out of the gradient
    return torch.where(valid, log_z, 0.0), target, valid


def valid_mean(values: Tensor, n_valid: Tensor) -> Tensor:
    """``sum(values) / n_valid``, 0 (with a graph) when there is no valid token."""
    return values.sum() / n_valid.clamp_min(1).to(values.dtype)


def cross_entropy_and_log_z(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Mean CE over valid tokens and the per-token ``log Z`` it was computed from (one logsumexp).

    Returns ``(ce, log_z, valid, n_valid)``: ``ce`` a scalar (0 when every label is ignored),
    ``log_z`` ``[N]`` (0 at ignored tokens; differentiable, so a z-loss built on it shares the pass),
    ``valid`` the ``[N]`` mask and ``n_valid`` its count (0-d tensor, no host sync).
    """
    log_z, target, valid = log_z_and_target(logits, labels)
    n_valid = valid.sum()
    ce = valid_mean(log_z - target, n_valid)
    return ce, log_z, valid, n_valid


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross entropy over valid tokens (labels == -100 ignored), float32 inside.

    ``logits`` ``[..., V]`` and ``labels`` ``[...]``. Equals ``F.cross_entropy(logits.float().flatten(0, -2),
    labels.flatten())`` when some label is valid; 0 (with a graph) when none is.
    """
    return cross_entropy_and_log_z(logits, labels)[0]
