"""μ-loss (OEC): ``||μ||^2`` with ``μ = mean_i e_i`` the column mean of the output embeddings.

The mean logit equals ``μ · h``, so penalising ``||μ||`` keeps all logits from drifting together.
O(V·H) and independent of the batch: added once per optimizer step.
"""

from __future__ import annotations

from torch import Tensor

from trainables.losses.cross_entropy import upcast
from trainables.losses.term import TermInputs


def mu_loss(w_out: Tensor) -> Tensor:
    """``||w_out.mean(dim=0)||**2`` for ``w_out`` ``[V, H]``, unweighted, float32 inside."""
    if w_out.dim() != 2:
        raise ValueError(f"w_out must be [V, H], got shape {tuple(w_out.shape)}")
    return upcast(w_out).mean(dim=0).square().sum()


def penalty(inputs: TermInputs) -> tuple[Tensor, dict[str, Tensor]]:
    if inputs.w_out is None:
        raise ValueError("loss term 'mu_loss' needs w_out (the output embeddings [V, H])")
    value = mu_loss(inputs.w_out)
    return value, {"term_mu_loss": value.detach()}
