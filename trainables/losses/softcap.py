"""Logit soft-capping (OEC v2, Gemma 2): ``l <- cap · tanh(l / cap)``.

A transform of the head, not a penalty: the engine hands ``transform`` to the model as its logit
transform when the ``softcap`` term is configured, so CE, z-loss and the diagnostics all see capped
logits. It runs in the head's precision: the head owns its rounding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def softcap(logits: Tensor, cap: float) -> Tensor:
    """``cap * tanh(logits / cap)``: smooth, odd, identity near 0, bounded by ``cap`` in absolute value."""
    if isinstance(cap, bool) or not (isinstance(cap, int | float) and math.isfinite(cap) and cap > 0):
        raise ValueError(f"softcap: cap must be a finite number > 0, got {cap!r}")
    return torch.tanh(logits / cap) * cap


def transform(logits: Tensor, *, cap: float) -> Tensor:
    """The logit-transform hook of the ``softcap`` term."""
    return softcap(logits, cap)
