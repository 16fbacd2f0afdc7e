"""The logit-mean penalty against a slow float64 reference: padding, precision, gradient, the objective."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.losses import LossConfig, cross_entropy, total_loss
from trainables.losses.logit_mean import logit_mean_loss
from trainables.losses.registry import COEFFICIENTS, get_term

IGNORE = -100


def reference(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Python loops over float64: mean over tokens whose label is not -100 of (mean of its logits)^2."""
    rows = logits.detach().double().reshape(-1, logits.shape[-1]).tolist()
    targets = labels.reshape(-1).tolist()
    values = [(math.fsum(row) / len(row)) ** 2 for row, y in zip(rows, targets, strict=True) if y != IGNORE]
    return math.fsum(values) / len(values) if values else 0.0


def _batch(seed: int, B: int = 3, T: int = 7, V: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 3 + 1.5  # a common shift, as drifting embeddings give
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, 4:] = IGNORE
    labels[2, :2] = IGNORE
    return logits, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_float64_reference(seed: int) -> None:
    logits, labels = _batch(seed)
    assert logit_mean_loss(logits, labels).item() == pytest.approx(reference(logits, labels), rel=1e-6)
    wide = logit_mean_loss(logits.double(), labels)
    assert wide.dtype == torch.float64 and wide.item() == pytest.approx(reference(logits, labels), rel=1e-12)


def test_padding_with_ignore_index_changes_nothing() -> None:
    logits, labels = _batch(3)
    padded_logits = torch.cat([logits, torch.randn(3, 5, 11) * 100], dim=1)  # huge logits at padded tokens
    padded_labels = torch.cat([labels, torch.full((3, 5), IGNORE)], dim=1)
    assert logit_mean_loss(padded_logits, padded_labels).item() == pytest.approx(
        logit_mean_loss(logits, labels).item(), rel=1e-6
    )
    none = logit_mean_loss(logits.requires_grad_(), torch.full_like(labels, IGNORE))
    assert none.item() == 0.0 and none.requires_grad


def test_bf16_logits_are_accumulated_in_float32() -> None:
    logits, labels = _batch(4)
    low = logits.bfloat16()
    value = logit_mean_loss(low, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(reference(low.float(), labels), rel=1e-5)  # the head's rounding is kept


def test_gradient_matches_the_float64_reference() -> None:
    logits, labels = _batch(5)
    x = logits.clone().requires_grad_()
    logit_mean_loss(x, labels).backward()
    ref = logits.double().requires_grad_()
    valid = (labels != IGNORE).reshape(-1)
    means = ref.reshape(-1, ref.shape[-1]).mean(dim=-1)
    (means[valid].square().sum() / valid.sum()).backward()
    torch.testing.assert_close(x.grad.double(), ref.grad, rtol=1e-5, atol=1e-9)


def test_a_shift_common_to_all_logits_is_penalised_while_ce_is_unchanged() -> None:
    logits, labels = _batch(6)
    centred = logits - logits.mean(dim=-1, keepdim=True)
    assert logit_mean_loss(centred, labels).item() == pytest.approx(0.0, abs=1e-10)
    assert cross_entropy(centred, labels).item() == pytest.approx(cross_entropy(logits, labels).item(), rel=1e-6)


def test_it_is_a_registered_penalty_of_the_objective() -> None:
    assert get_term("logit_mean").kind == "penalty" and "logit_mean_weight" in COEFFICIENTS
    logits, labels = _batch(7)
    config = LossConfig.from_cli(["logit_mean=0.01"])
    assert config == LossConfig.from_method("logit_mean", {"logit_mean_weight": 0.01})
    total, metrics = total_loss(config, logits=logits, labels=labels)
    expected = reference(logits, labels)
    assert metrics["term_logit_mean"].item() == pytest.approx(expected, rel=1e-6)
    assert total.item() == pytest.approx(cross_entropy(logits, labels).item() + 0.01 * expected, rel=1e-6)
    assert LossConfig.from_method("logit_mean", {}).terms[0].weight == 1e-4  # the registry's default
