"""Slow, obvious float64 references for the loss math (Python loops over plain floats)."""

from __future__ import annotations

import math

from torch import Tensor

IGNORE = -100


def _rows(logits: Tensor, labels: Tensor) -> list[tuple[list[float], int]]:
    flat = logits.detach().double().reshape(-1, logits.shape[-1]).tolist()
    return list(zip(flat, labels.reshape(-1).tolist(), strict=True))


def logsumexp(values: list[float]) -> float:
    m = max(values)
    return m + math.log(math.fsum(math.exp(v - m) for v in values))


def cross_entropy(logits: Tensor, labels: Tensor) -> float:
    losses = [logsumexp(row) - row[y] for row, y in _rows(logits, labels) if y != IGNORE]
    return math.fsum(losses) / len(losses) if losses else 0.0


def z_loss(logits: Tensor, labels: Tensor) -> float:
    values = [logsumexp(row) ** 2 for row, y in _rows(logits, labels) if y != IGNORE]
    return math.fsum(values) / len(values) if values else 0.0


def mu_loss(w_out: Tensor) -> float:
    rows = w_out.detach().double().tolist()
    V, H = len(rows), len(rows[0])
    return math.fsum((math.fsum(rows[i][j] for i in range(V)) / V) ** 2 for j in range(H))


def softcap(x: float, cap: float) -> float:
    return cap * math.tanh(x / cap)


def simreg(
    hidden: Tensor, labels: Tensor, temperature: float, *, causal: bool = False, normalize: bool = True
) -> float:
    anchor_losses: list[float] = []
    for b in range(hidden.shape[0]):
        z = hidden[b].detach().double().tolist()
        if normalize:
            z = [[v / math.sqrt(math.fsum(u * u for u in vec)) for v in vec] for vec in z]
        y = labels[b].tolist()
        T = len(y)

        def sim(t: int, a: int, z=z) -> float:
            return math.fsum(p * q for p, q in zip(z[t], z[a], strict=True)) / temperature

        for t in range(T):
            if y[t] == IGNORE:
                continue
            allowed = [a for a in range(T) if a != t and y[a] != IGNORE and (a < t or not causal)]
            positives = [p for p in allowed if y[p] == y[t]]
            if not positives:
                continue
            lse = logsumexp([sim(t, a) for a in allowed])
            anchor_losses.append(-math.fsum(sim(t, p) - lse for p in positives) / len(positives))
    return math.fsum(anchor_losses) / len(anchor_losses) if anchor_losses else 0.0
