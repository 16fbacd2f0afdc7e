"""The training objective: cross entropy plus the configured terms, in one call per step.

``total_loss`` computes the logsumexp of the logits once and shares it between CE, the z-loss and the
``log Z`` diagnostics. Soft-capping is not applied here: the model's head applies it (it reads
``LossConfig.softcap``), so the logits passed in are already capped. μ-centering is not a term either:
call ``center_output_embeddings_`` (or ``LossConfig.after_step_``) after each optimizer step.
"""

from __future__ import annotations

from torch import Tensor

from trainables.losses.config import LossConfig
from trainables.losses.cross_entropy import cross_entropy_and_log_z, valid_mean
from trainables.losses.registry import TermInputs, get_term


def total_loss(
    config: LossConfig,
    *,
    logits: Tensor,
    labels: Tensor,
    hidden: Tensor | None = None,
    w_out: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``CE + Σ weight · term`` and its metrics.

    ``logits`` ``[B, T, V]`` (any float dtype; upcast inside), ``labels`` ``[B, T]`` (-100 = ignored),
    ``hidden`` ``[B, T, H]`` (needed by SimReg), ``w_out`` ``[V, H]`` (needed by μ-loss).
    Returns ``(total, metrics)``; ``metrics`` holds detached 0-d tensors (no host sync here):
    ``train_loss`` (plain CE), ``total_loss``, ``term_<name>`` (unweighted value of each term),
    ``log_z_mean`` and ``log_z_sq_mean`` (over valid tokens).
    """
    ce, log_z, valid, n_valid = cross_entropy_and_log_z(logits, labels)
    inputs = TermInputs(
        logits=logits, labels=labels, hidden=hidden, w_out=w_out, log_z=log_z, valid=valid, n_valid=n_valid
    )
    total = ce
    metrics: dict[str, Tensor] = {"train_loss": ce.detach()}
    for tc in config.terms:
        value, term_metrics = get_term(tc.name).function(inputs, **tc.params)
        total = total + tc.weight * value
        metrics.update(term_metrics)
    lz = log_z.detach()
    metrics["total_loss"] = total.detach()
    metrics["log_z_mean"] = valid_mean(lz, n_valid)
    metrics["log_z_sq_mean"] = valid_mean(lz.square(), n_valid)
    return total, metrics
