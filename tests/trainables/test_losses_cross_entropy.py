"""Cross entropy and the shared logsumexp (the fused CE + log Z pass)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.trainables import loss_reference as ref
from trainables.losses import cross_entropy, cross_entropy_and_log_z

RTOL = 1e-5


def _batch(seed: int, B: int = 3, T: int = 7, V: int = 11, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * scale
    labels = torch.randint(0, V, (B, T), generator=g)
    return logits, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(seed: int) -> None:
    logits, labels = _batch(seed)
    assert cross_entropy(logits, labels).item() == pytest.approx(ref.cross_entropy(logits, labels), rel=RTOL)


def test_padded_batch_matches_reference_and_torch() -> None:
    logits, labels = _batch(3)
    labels[0, 4:] = -100
    labels[2, :2] = -100
    value = cross_entropy(logits, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(ref.cross_entropy(logits, labels), rel=RTOL)
    assert value.item() == pytest.approx(F.cross_entropy(logits.flatten(0, 1), labels.flatten()).item(), rel=RTOL)


def test_all_labels_ignored_is_zero_with_a_graph() -> None:
    logits, labels = _batch(4)
    logits.requires_grad_()
    value = cross_entropy(logits, torch.full_like(labels, -100))
    assert value.item() == 0.0
    value.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_padding_leaves_value_and_gradient_unchanged() -> None:
    logits, labels = _batch(5)
    pad_logits = torch.cat([logits, torch.randn(3, 4, 11) * 50], dim=1).requires_grad_()
    pad_labels = torch.cat([labels, torch.full((3, 4), -100)], dim=1)
    logits.requires_grad_()
    a = cross_entropy(logits, labels)
    b = cross_entropy(pad_logits, pad_labels)
    # equal up to the order of float32 summation
    assert b.item() == pytest.approx(a.item(), rel=1e-6)
    a.backward()
    b.backward()
    torch.testing.assert_close(pad_logits.grad[:, :7], logits.grad, rtol=1e-6, atol=1e-9)
    assert torch.count_nonzero(pad_logits.grad[:, 7:]) == 0


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_padded_row_with_a_non_finite_logit_leaves_the_gradient_finite(bad: float) -> None:
    from trainables.losses.z_loss import z_loss_from_log_z

    logits, labels = _batch(6)
    labels[1, 3] = -100
    clean = logits.clone().requires_grad_()
    dirty_values = logits.clone()
    dirty_values[1, 3, 5] = bad  # a padded row may hold anything: it must change nothing
    dirty = dirty_values.requires_grad_()
    for x in (clean, dirty):
        ce, log_z, _, n_valid = cross_entropy_and_log_z(x, labels)
        (ce + 1e-2 * z_loss_from_log_z(log_z, n_valid)).backward()  # CE and the z-loss share the fused backward
        assert torch.isfinite(ce)
    assert dirty.grad is not None and clean.grad is not None
    assert torch.isfinite(dirty.grad).all()
    assert torch.count_nonzero(dirty.grad[1, 3]) == 0
    torch.testing.assert_close(dirty.grad, clean.grad, rtol=0, atol=0)


def test_gradient_matches_autograd_of_log_softmax() -> None:
    logits, labels = _batch(6)
    labels[1, ::2] = -100
    x64 = logits.double().requires_grad_()
    F.cross_entropy(x64.flatten(0, 1), labels.flatten()).backward()
    x = logits.clone().requires_grad_()
    cross_entropy(x, labels).backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-7)


def test_gradcheck_float64() -> None:
    logits, labels = _batch(7, B=2, T=3, V=5)
    labels[0, 1] = -100
    x = logits.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: cross_entropy(t, labels), (x,))

    def both(t: torch.Tensor) -> torch.Tensor:  # the shared log Z feeds CE and a z-loss-like term at once
        ce, log_z, _, n = cross_entropy_and_log_z(t, labels)
        return ce + 0.3 * log_z.square().sum() / n

    assert torch.autograd.gradcheck(both, (x,))


def test_float32_agrees_with_float64() -> None:
    logits, labels = _batch(8, scale=8.0)
    labels[2, 3:] = -100
    a = cross_entropy(logits, labels)
    b = cross_entropy(logits.double(), labels)
    assert b.dtype == torch.float64
    assert a.item() == pytest.approx(b.item(), rel=RTOL)


def test_bf16_logits_are_upcast() -> None:
    logits, labels = _batch(9)
    x = logits.bfloat16().requires_grad_()
    value = cross_entropy(x, labels)
    assert value.dtype == torch.float32
    # the head's rounding is kept: the value is the CE of the bf16 numbers, computed in float32
    assert value.item() == pytest.approx(ref.cross_entropy(x.float(), labels), rel=RTOL)
    value.backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16


def test_log_z_is_logsumexp_at_valid_tokens() -> None:
    logits, labels = _batch(10)
    labels[0, :3] = -100
    _, log_z, valid, n_valid = cross_entropy_and_log_z(logits, labels)
    expected = torch.logsumexp(logits.double(), dim=-1).flatten()
    mask = labels.flatten() != -100
    torch.testing.assert_close(valid, mask)
    assert int(n_valid) == int(mask.sum())
    torch.testing.assert_close(log_z[mask].double(), expected[mask], rtol=1e-6, atol=1e-6)
    assert torch.count_nonzero(log_z[~mask]) == 0


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="logits"):
        cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
