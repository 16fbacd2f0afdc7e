"""SimReg (this project's supervised-contrastive interpretation) against a float64 loop reference."""

from __future__ import annotations

import pytest
import torch

from tests.trainables import loss_reference as ref
from trainables.losses import simreg_loss
from trainables.losses.simreg import chunk_rows

RTOL = 1e-5


def _batch(seed: int, B: int = 3, T: int = 9, H: int = 5, vocab: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g)
    labels = torch.randint(0, vocab, (B, T), generator=g)  # a small vocabulary: plenty of positives
    return hidden, labels


def _grad(hidden: torch.Tensor, labels: torch.Tensor, **kw: object) -> tuple[torch.Tensor, torch.Tensor]:
    h = hidden.clone().requires_grad_()
    value = simreg_loss(h, labels, **kw)  # type: ignore[arg-type]
    value.backward()
    assert h.grad is not None
    return value.detach(), h.grad


@pytest.mark.parametrize("temperature", [0.1, 1.0])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_reference(temperature: float, causal: bool, normalize: bool) -> None:
    hidden, labels = _batch(0)
    if not normalize:
        hidden = hidden * 0.3  # keep raw dot products / τ in a sane range
    labels[0, 6:] = -100  # padded tail
    labels[1, ::3] = -100  # holes
    got = simreg_loss(hidden, labels, temperature, causal=causal, normalize=normalize)
    want = ref.simreg(hidden, labels, temperature, causal=causal, normalize=normalize)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=RTOL)


def test_sequence_without_repeated_label_adds_no_anchor() -> None:
    hidden, labels = _batch(1, B=2, T=6)
    labels[0] = torch.arange(6)  # every next token distinct: no positives
    labels[1] = torch.tensor([1, 2, 1, 2, 3, 1])
    both = simreg_loss(hidden, labels, 0.2)
    second = simreg_loss(hidden[1:], labels[1:], 0.2)
    assert both.item() == pytest.approx(ref.simreg(hidden, labels, 0.2), rel=RTOL)
    assert both.item() == pytest.approx(second.item(), rel=RTOL)  # each anchor weighs the same


@pytest.mark.parametrize("case", ["all_ignored", "no_positive"])
def test_no_anchor_gives_a_zero_that_carries_a_graph(case: str) -> None:
    hidden, labels = _batch(2, B=2, T=5)
    labels = torch.full_like(labels, -100) if case == "all_ignored" else torch.arange(10).reshape(2, 5)
    h = hidden.clone().requires_grad_()
    value = simreg_loss(h, labels, 0.1)
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert h.grad is not None and torch.count_nonzero(h.grad) == 0


def test_single_position_sequence() -> None:
    hidden, labels = _batch(3, B=2, T=1)
    assert simreg_loss(hidden, labels, 0.1).item() == 0.0


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("budget", [1, 17, 40])
def test_chunked_equals_unchunked(causal: bool, budget: int) -> None:
    hidden, labels = _batch(4, B=2, T=11)
    labels[1, 8:] = -100
    assert chunk_rows(2, 11, budget) < 11  # the budget really splits the rows
    v_full, g_full = _grad(hidden, labels, temperature=0.1, causal=causal)
    v_chunk, g_chunk = _grad(hidden, labels, temperature=0.1, causal=causal, chunk_budget=budget)
    assert v_chunk.item() == pytest.approx(v_full.item(), rel=1e-6)
    torch.testing.assert_close(g_chunk, g_full, rtol=1e-5, atol=1e-7)


def test_chunked_backward_keeps_no_full_similarity_matrix() -> None:
    B, T = 2, 16
    hidden, labels = _batch(12, B=B, T=T)
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    for budget, whole_kept in [(B * T * 4, False), (B * T * T, True)]:
        saved.clear()
        h = hidden.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            value = simreg_loss(h, labels, 0.1, chunk_budget=budget)
        value.backward()
        assert (max(saved) >= B * T * T) == whole_kept, (budget, saved)


def test_chunk_rows_respects_the_budget() -> None:
    for B, T, budget in [(2, 11, 40), (8, 2048, 1 << 24), (64, 2048, 1 << 24), (4, 16, 10**9), (3, 5, 1)]:
        rows = chunk_rows(B, T, budget)
        assert 1 <= rows <= T
        assert B * rows * T <= budget or rows == 1
    assert chunk_rows(4, 16, 4 * 16 * 16) == 16  # fits whole: one block


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("budget", [1 << 24, 12])
def test_gradcheck_float64(causal: bool, normalize: bool, budget: int) -> None:
    hidden, labels = _batch(5, B=2, T=6, H=3, vocab=3)
    labels[0, 4] = -100
    h = (hidden * 0.5).double().requires_grad_()
    fn = lambda x: simreg_loss(x, labels, 0.5, causal=causal, normalize=normalize, chunk_budget=budget)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (h,))


def test_padding_leaves_value_and_gradient_unchanged() -> None:
    hidden, labels = _batch(6, B=2, T=8)
    pad_hidden = torch.cat([hidden, torch.randn(2, 3, 5) * 10], dim=1)
    pad_labels = torch.cat([labels, torch.full((2, 3), -100)], dim=1)
    v, g = _grad(hidden, labels, temperature=0.1)
    pv, pg = _grad(pad_hidden, pad_labels, temperature=0.1)
    assert pv.item() == pytest.approx(v.item(), rel=1e-6)
    torch.testing.assert_close(pg[:, :8], g, rtol=1e-5, atol=1e-7)
    assert torch.count_nonzero(pg[:, 8:]) == 0


def test_float32_agrees_with_float64() -> None:
    hidden, labels = _batch(7)
    v32, g32 = _grad(hidden, labels, temperature=0.05)
    v64, g64 = _grad(hidden.double(), labels, temperature=0.05)
    assert v64.dtype == torch.float64
    assert v32.item() == pytest.approx(v64.item(), rel=RTOL)
    torch.testing.assert_close(g32.double(), g64, rtol=1e-4, atol=1e-6)


def test_gradient_matches_autograd_of_a_dense_formula() -> None:
    hidden, labels = _batch(8, B=2, T=7)
    labels[0, 5:] = -100
    h = hidden.double().requires_grad_()
    z = torch.nn.functional.normalize(h, dim=-1)
    s = z @ z.transpose(1, 2) / 0.2
    valid = labels != -100
    T = labels.shape[1]
    contrast = valid[:, None, :] & ~torch.eye(T, dtype=torch.bool)
    pos = contrast & (labels[:, :, None] == labels[:, None, :])
    n_pos = pos.sum(-1)
    anchor = valid & (n_pos > 0)
    lse = torch.logsumexp(s.masked_fill(~contrast, float("-inf")), -1)
    rows = lse - torch.where(pos, s, 0).sum(-1) / n_pos.clamp_min(1)
    dense = rows[anchor].mean()
    dense.backward()
    v, g = _grad(hidden.double(), labels, temperature=0.2)
    assert v.item() == pytest.approx(dense.item(), rel=1e-10)
    torch.testing.assert_close(g, h.grad, rtol=1e-9, atol=1e-12)


def test_bf16_hidden_is_upcast() -> None:
    hidden, labels = _batch(9)
    h = hidden.bfloat16().requires_grad_()
    value = simreg_loss(h, labels, 0.1)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(ref.simreg(h.float(), labels, 0.1), rel=RTOL)
    value.backward()
    assert h.grad is not None and h.grad.dtype == torch.bfloat16


def test_autocast_does_not_lower_the_precision() -> None:
    hidden, labels = _batch(11)
    h = hidden.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = simreg_loss(h, labels, 0.1)
        value.backward()
    v, g = _grad(hidden, labels, temperature=0.1)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(v.item(), rel=1e-6)
    torch.testing.assert_close(h.grad, g, rtol=1e-5, atol=1e-7)


def test_invalid_arguments_are_clear_errors() -> None:
    hidden, labels = _batch(10)
    with pytest.raises(ValueError, match="temperature"):
        simreg_loss(hidden, labels, 0.0)
    with pytest.raises(ValueError, match=r"hidden \[B, T, H\]"):
        simreg_loss(hidden[0], labels[0], 0.1)
    with pytest.raises(ValueError, match="chunk_budget"):
        simreg_loss(hidden, labels, 0.1, chunk_budget=0)
