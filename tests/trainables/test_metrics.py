"""Diagnostics of logits and output embeddings against float64 loop references."""

from __future__ import annotations

import math

import pytest
import torch

from tests.trainables import loss_reference as ref
from trainables.model.metrics import (
    LogitStats,
    emb_anisotropy,
    embedding_stats,
    eval_diagnostics,
    grad_norm,
    logit_stats,
    mu_norm,
)


def _batch(seed: int, B: int = 3, T: int = 5, V: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 3 - 2
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, 3:] = -100
    return logits, labels


def _sample_std(row: list[float]) -> float:
    m = math.fsum(row) / len(row)
    return math.sqrt(math.fsum((v - m) ** 2 for v in row) / (len(row) - 1))


def _reference_logit_stats(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    flat = logits.double().reshape(-1, logits.shape[-1]).tolist()
    rows = [row for row, y in zip(flat, labels.flatten().tolist(), strict=True) if y != -100]
    values = [v for row in rows for v in row]
    mean = math.fsum(values) / len(values)
    log_z = [ref.logsumexp(row) for row in rows]
    return {
        "logits_mean": mean,
        "logits_std": math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values)),
        "logits_absmax": max(abs(v) for v in values),
        # the paper's: per token, then the mean over tokens (torch.std is Bessel-corrected)
        "logits_mean_absmax": math.fsum(max(abs(v) for v in row) for row in rows) / len(rows),
        "logits_mean_std": math.fsum(_sample_std(row) for row in rows) / len(rows),
        "log_z_mean": math.fsum(log_z) / len(log_z),
        "log_z_sq_mean": math.fsum(z * z for z in log_z) / len(log_z),
    }


def test_logit_stats_match_reference_over_valid_tokens() -> None:
    logits, labels = _batch(0)
    logits[0, 4] = 1000.0  # an ignored token must not count
    got = logit_stats(logits, labels)
    want = _reference_logit_stats(logits, labels)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key
    assert all(type(v) is float for v in got.values())


def test_paper_statistics_against_the_official_formulas() -> None:
    # nanoGPT/train.py: mean(max(abs(lgt), -1)) and mean(std(lgt, -1)) over a [N, V] matrix of tokens
    logits, labels = _batch(3, V=11)
    labels[:] = 0  # all valid, as the official code's batches
    lgt = logits.reshape(-1, 11)
    got = logit_stats(logits, labels)
    assert got["logits_mean_absmax"] == pytest.approx(lgt.abs().max(dim=-1)[0].mean().item(), rel=1e-6)
    assert got["logits_mean_std"] == pytest.approx(lgt.std(dim=-1).mean().item(), rel=1e-6)
    assert got["logits_mean"] == pytest.approx(lgt.mean(dim=-1).mean().item(), rel=1e-6)
    assert got["logits_absmax"] >= got["logits_mean_absmax"]


def test_accumulating_batches_equals_one_big_batch() -> None:
    (a, ya), (b, yb) = _batch(1), _batch(2, T=4)
    b = b + 5.0  # batches with different means exercise the between-token variance
    stats = LogitStats()
    stats.add(a, ya)
    stats.add(b.bfloat16(), yb)
    got = stats.compute()
    flat = torch.cat([a.reshape(-1, 7), b.bfloat16().float().reshape(-1, 7)])
    want = _reference_logit_stats(flat, torch.cat([ya.flatten(), yb.flatten()]))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key


def test_no_valid_token_gives_zeros() -> None:
    logits, labels = _batch(3)
    assert set(logit_stats(logits, torch.full_like(labels, -100)).values()) == {0.0}
    assert set(LogitStats().compute().values()) == {0.0}


def test_mu_norm_matches_reference() -> None:
    w = torch.randn(11, 4, generator=torch.Generator().manual_seed(4)) + 0.7
    assert mu_norm(w) == pytest.approx(math.sqrt(ref.mu_loss(w)), rel=1e-6)


def _reference_anisotropy(w: torch.Tensor) -> float:
    rows = w.double().tolist()
    norms = [math.sqrt(math.fsum(v * v for v in r)) for r in rows]
    total, pairs = [], 0
    for i in range(len(rows)):
        for j in range(len(rows)):
            if i == j:
                continue
            pairs += 1
            dot = math.fsum(p * q for p, q in zip(rows[i], rows[j], strict=True))
            total.append(dot / (norms[i] * norms[j]) if norms[i] and norms[j] else 0.0)
    return math.fsum(total) / pairs


@pytest.mark.parametrize("shift", [0.0, 0.5, 3.0])
def test_anisotropy_matches_pairwise_reference(shift: float) -> None:
    w = torch.randn(17, 5, generator=torch.Generator().manual_seed(5)) + shift
    w[3] = 0.0  # a zero row counts as cosine 0
    assert emb_anisotropy(w) == pytest.approx(_reference_anisotropy(w), rel=1e-5, abs=1e-7)


def test_anisotropy_extremes() -> None:
    same = torch.ones(6, 3)
    assert emb_anisotropy(same) == pytest.approx(1.0, rel=1e-6)
    assert emb_anisotropy(torch.eye(4)) == pytest.approx(0.0, abs=1e-9)
    assert emb_anisotropy(torch.ones(1, 3)) == 0.0


def test_grad_norm_matches_clip_grad_norm() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2, bias=False))
    model(torch.randn(5, 4)).square().sum().backward()
    assert grad_norm(model.parameters()) == pytest.approx(
        float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)), rel=1e-6
    )
    assert grad_norm([torch.zeros(2, requires_grad=True)]) == 0.0


def test_eval_diagnostics_names_follow_the_sweep_dir_contract() -> None:
    logits, labels = _batch(6)
    w = torch.randn(7, 3)
    out = eval_diagnostics(logits=logits, labels=labels, w_out=w)
    assert set(out) == {
        "logits_mean", "logits_std", "logits_absmax", "logits_mean_absmax", "logits_mean_std", "log_z_mean",
        "log_z_sq_mean", "mu_norm", "emb_anisotropy",
    }  # fmt: skip
    assert out["mu_norm"] == embedding_stats(w)["mu_norm"]
