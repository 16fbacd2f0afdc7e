"""μ-centering (OEC): after every optimizer step, ``W_out <- W_out - mean(W_out, dim=0)``.

An after-step term, not a penalty: it runs under no_grad after ``optimizer.step()`` (order: clip -> step ->
zero_grad -> center) and leaves the optimizer state alone. Every logit of a token moves by the same
``-μ·h``, so probabilities and CE are unchanged while the mean logit becomes 0. With weight tying the
input embeddings are centred too (same tensor).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


@torch.no_grad()
def center_output_embeddings_(w_out: Tensor) -> None:
    """Subtract the column mean of ``w_out`` ``[V, H]`` in place (mean taken in float32 or wider)."""
    if w_out.dim() != 2:
        raise ValueError(f"w_out must be [V, H], got shape {tuple(w_out.shape)}")
    acc = torch.float64 if w_out.dtype == torch.float64 else torch.float32
    w_out.sub_(w_out.mean(dim=0, keepdim=True, dtype=acc).to(w_out.dtype))


def after_step(model: Any) -> None:
    """The after-step hook of the ``mu_centering`` term: centres ``model.w_out``."""
    center_output_embeddings_(model.w_out)
