"""The training objective, built from a ``LossConfig`` through each term's hooks (``term.Term``).

``total_loss`` computes the logsumexp of the logits once and shares it between CE, the penalties (z-loss
reads it) and the ``log Z`` diagnostics. Logit transforms are not applied here: the model's head applies
``logit_transform(config)``, so the logits passed in are already transformed. After-step hooks run
through ``after_step_`` after each optimizer step. The engine knows no term by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from trainables.losses.config import LossConfig, TermConfig
from trainables.losses.cross_entropy import IGNORE_INDEX, cross_entropy_and_log_z, valid_mean
from trainables.losses.term import TermInputs


@dataclasses.dataclass(frozen=True)
class StepTotals:
    """What the parts of one optimizer step (ranks, micro-batches) count together: valid tokens and,
    for each penalty with a ``count`` hook, its units (``term.Term.counter``)."""

    n_valid: Tensor  # [] valid tokens of the whole step
    counts: Mapping[str, Tensor]  # term name -> [] its count over the whole step


def _counted(config: LossConfig) -> list[TermConfig]:
    return [tc for tc in config.of_kind("penalty") if tc.term.counter() is not None]


def local_counts(config: LossConfig, labels: Tensor) -> Tensor:
    """``[1 + K]`` (long): this part's valid tokens, then the count of each of the K configured penalties
    that have a ``count`` hook; summed over the parts of a step, ``step_totals`` reads it. No host sync."""
    n_valid = (labels != IGNORE_INDEX).sum()
    counts = [tc.term.counter()(labels, **tc.params) for tc in _counted(config)]
    return torch.stack([n_valid, *(c.to(n_valid.dtype) for c in counts)])


def step_totals(config: LossConfig, summed: Tensor) -> StepTotals:
    """The ``StepTotals`` of ``local_counts`` summed over every part of a step."""
    names = [tc.name for tc in _counted(config)]
    return StepTotals(n_valid=summed[0], counts={name: summed[1 + i] for i, name in enumerate(names)})


def total_loss(
    config: LossConfig,
    *,
    logits: Tensor,
    labels: Tensor,
    hidden: Tensor | None = None,
    w_out: Tensor | None = None,
    totals: StepTotals | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``CE + Σ weight · penalty`` and its metrics.

    ``logits`` ``[B, T, V]`` (any float dtype; upcast inside), ``labels`` ``[B, T]`` (-100 = ignored),
    ``hidden`` ``[B, T, H]`` (needed by SimReg), ``w_out`` ``[V, H]`` (needed by μ-loss).
    Returns ``(total, metrics)``; ``metrics`` holds detached 0-d tensors (no host sync here):
    ``train_loss`` (plain CE), ``total_loss``, ``term_<name>`` (unweighted value of each penalty),
    ``log_z_mean`` and ``log_z_sq_mean`` (over valid tokens). ``totals``: the whole step's counts when
    this call computes one part of it (``TermInputs.n_valid_total``/``count_total``).
    """
    ce, log_z, valid, n_valid = cross_entropy_and_log_z(logits, labels)
    inputs = TermInputs(
        logits=logits,
        labels=labels,
        hidden=hidden,
        w_out=w_out,
        log_z=log_z,
        valid=valid,
        n_valid=n_valid,
        n_valid_total=totals.n_valid if totals is not None else None,
    )
    total = ce
    metrics: dict[str, Tensor] = {"train_loss": ce.detach()}
    for tc in config.of_kind("penalty"):
        counted = totals.counts.get(tc.name) if totals is not None else None
        term_inputs = inputs if counted is None else dataclasses.replace(inputs, count_total=counted)
        value, term_metrics = tc.term.penalty(term_inputs, **tc.params)
        total = total + tc.weight * value
        metrics.update(term_metrics)
    lz = log_z.detach()
    metrics["total_loss"] = total.detach()
    metrics["log_z_mean"] = valid_mean(lz, n_valid)
    metrics["log_z_sq_mean"] = valid_mean(lz.square(), n_valid)
    return total, metrics


class LogitTransform:
    """The configured logit transforms applied in registry order: the model head's last operation."""

    def __init__(self, terms: tuple[TermConfig, ...]) -> None:
        self._steps = [(tc.term.hook(), dict(tc.params)) for tc in terms]
        self.names = tuple(tc.name for tc in terms)

    def __call__(self, logits: Tensor) -> Tensor:
        for transform, params in self._steps:
            logits = transform(logits, **params)
        return logits


def logit_transform(config: LossConfig) -> Callable[[Tensor], Tensor] | None:
    """What the model's head applies to its logits (soft-capping); None without such a term."""
    terms = config.of_kind("logit_transform")
    return LogitTransform(terms) if terms else None


@torch.no_grad()
def after_step_(config: LossConfig, model: Any) -> None:
    """Runs the configured after-step hooks (μ-centering) on ``model`` (it exposes ``w_out``)."""
    for tc in config.of_kind("after_step"):
        tc.term.after_step(model, **tc.params)
