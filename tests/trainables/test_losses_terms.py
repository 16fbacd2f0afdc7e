"""z-loss, μ-loss, μ-centering and soft-capping against float64 references."""

from __future__ import annotations

import math

import pytest
import torch

from tests.trainables import loss_reference as ref
from trainables.losses import center_output_embeddings_, cross_entropy, mu_loss, softcap, z_loss

RTOL = 1e-5


def _batch(seed: int, B: int = 3, T: int = 6, V: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, V, generator=g) * 2 - 1, torch.randint(0, V, (B, T), generator=g)


# ----------------------------------------------------------------------------- z-loss
@pytest.mark.parametrize("seed", [0, 1])
def test_z_loss_matches_reference_with_padding(seed: int) -> None:
    logits, labels = _batch(seed)
    labels[0, 3:] = -100
    value = z_loss(logits, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(ref.z_loss(logits, labels), rel=RTOL)


def test_z_loss_all_ignored_is_zero_with_a_graph() -> None:
    logits, labels = _batch(2)
    x = logits.requires_grad_()
    value = z_loss(x, torch.full_like(labels, -100))
    assert value.item() == 0.0
    value.backward()
    assert torch.count_nonzero(x.grad) == 0


def test_z_loss_padding_changes_nothing() -> None:
    logits, labels = _batch(3)
    pad = torch.cat([logits, torch.randn(3, 2, 9) * 30], dim=1)
    pad_labels = torch.cat([labels, torch.full((3, 2), -100)], dim=1)
    assert z_loss(pad, pad_labels).item() == pytest.approx(z_loss(logits, labels).item(), rel=1e-6)


def test_z_loss_gradcheck_float64() -> None:
    logits, labels = _batch(4, B=2, T=3, V=5)
    labels[1, 0] = -100
    x = logits.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: z_loss(t, labels), (x,))


def test_z_loss_float32_and_bf16() -> None:
    logits, labels = _batch(5)
    logits = logits * 5
    assert z_loss(logits, labels).item() == pytest.approx(z_loss(logits.double(), labels).item(), rel=RTOL)
    bf = logits.bfloat16()
    value = z_loss(bf, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(ref.z_loss(bf.float(), labels), rel=RTOL)


# ----------------------------------------------------------------------------- μ-loss
def test_mu_loss_matches_reference() -> None:
    w = torch.randn(13, 6, generator=torch.Generator().manual_seed(6)) + 0.3
    value = mu_loss(w)
    assert value.item() == pytest.approx(ref.mu_loss(w), rel=RTOL)
    assert mu_loss(w.double()).item() == pytest.approx(ref.mu_loss(w), rel=1e-12)
    bf = w.bfloat16()
    assert mu_loss(bf).dtype == torch.float32
    assert mu_loss(bf).item() == pytest.approx(ref.mu_loss(bf.float()), rel=RTOL)


def test_mu_loss_gradcheck_float64() -> None:
    w = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mu_loss, (w,))


def test_mu_loss_needs_a_matrix() -> None:
    with pytest.raises(ValueError, match=r"\[V, H\]"):
        mu_loss(torch.zeros(3))


# ----------------------------------------------------------------------- μ-centering
def test_after_an_optimizer_step_centering_zeroes_the_column_mean() -> None:
    torch.manual_seed(7)
    head = torch.nn.Linear(8, 17, bias=False)  # weight [V=17, H=8]
    with torch.no_grad():
        head.weight.add_(0.5)  # a large mean to remove
    opt = torch.optim.AdamW(head.parameters(), lr=0.1, betas=(0.9, 0.95), weight_decay=0.0)
    h, y = torch.randn(4, 5, 8), torch.randint(0, 17, (4, 5))
    for _ in range(3):
        cross_entropy(head(h), y).backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        center_output_embeddings_(head.weight)
        assert head.weight.mean(dim=0).abs().max().item() < 1e-6
        assert head.weight.grad is None  # the hook leaves autograd and optimizer alone


@pytest.mark.parametrize("seed", [8, 9])
def test_centering_leaves_cross_entropy_unchanged(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(23, 6, generator=g) + torch.randn(6, generator=g) * 3  # a drifted mean
    h = torch.randn(3, 5, 6, generator=g)
    y = torch.randint(0, 23, (3, 5), generator=g)
    y[0, 0] = -100
    before = cross_entropy(h @ w.T, y).item()
    mean_logit_before = (h @ w.T).mean().item()
    center_output_embeddings_(w)
    assert cross_entropy(h @ w.T, y).item() == pytest.approx(before, rel=1e-5)
    assert abs((h @ w.T).mean().item()) < 1e-5 < abs(mean_logit_before)


def test_centering_bf16_weights_in_place() -> None:
    w = (torch.randn(64, 8) + 2).bfloat16()
    ptr = w.data_ptr()
    center_output_embeddings_(w)
    assert w.data_ptr() == ptr and w.dtype == torch.bfloat16
    assert w.float().mean(dim=0).abs().max().item() < 0.02  # bf16 rounding of the stored values


# ------------------------------------------------------------------------- soft-cap
def test_softcap_matches_reference() -> None:
    x = torch.linspace(-200, 200, 41)
    got = softcap(x, 30.0)
    want = torch.tensor([ref.softcap(v, 30.0) for v in x.tolist()])
    torch.testing.assert_close(got, want, rtol=RTOL, atol=1e-6)
    assert got.abs().max().item() <= 30.0
    assert softcap(torch.tensor([1e-3]), 30.0).item() == pytest.approx(1e-3, rel=1e-6)  # identity near 0


def test_softcap_keeps_dtype_and_gradient() -> None:
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: softcap(t, 2.0), (x,))
    assert softcap(torch.randn(3).bfloat16(), 30).dtype == torch.bfloat16


@pytest.mark.parametrize("cap", [0.0, -1.0, math.inf, float("nan"), True])
def test_softcap_rejects_bad_caps(cap: float) -> None:
    with pytest.raises(ValueError, match="cap"):
        softcap(torch.zeros(2), cap)
