"""z-loss (PaLM): mean over valid tokens of ``(log Z)^2``, ``Z = Σ_j exp(l_j)``.

It pins ``log Z`` near 0 by pushing every logit down together; it does not control the mean of the
output embeddings (docs/papers.md §1). The training path reuses the logsumexp of cross entropy
(``cross_entropy_and_log_z``), so the term costs an O(N) reduction on top of CE.
"""

from __future__ import annotations

from torch import Tensor

from trainables.losses.cross_entropy import log_z_and_target, valid_mean
from trainables.losses.term import TermInputs


def z_loss_from_log_z(log_z: Tensor, n_valid: Tensor) -> Tensor:
    """Mean of ``log_z**2`` over valid tokens; ``log_z`` is 0 at ignored tokens."""
    return valid_mean(log_z.square(), n_valid)


def z_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over valid tokens (labels != -100) of ``logsumexp(logits)**2``, unweighted, float32 inside.

    ``logits`` ``[..., V]``, ``labels`` ``[...]``; 0 (with a graph) when every label is ignored.
    """
    log_z, _, valid = log_z_and_target(logits, labels)
    return z_loss_from_log_z(log_z, valid.sum())


def penalty(inputs: TermInputs) -> tuple[Tensor, dict[str, Tensor]]:
    value = z_loss_from_log_z(inputs.log_z, inputs.n_valid)
    return value, {"term_z_loss": value.detach()}
