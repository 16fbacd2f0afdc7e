"""SimReg: a supervised-contrastive regulariser on the final hidden states.

**This form is this project's interpretation** of SimReg (arXiv 2605.08809; docs/papers.md §2): the paper
states a contrastive loss with a weight and a temperature that pulls together the representations
of tokens with the same ground-truth next token within a sequence; the layer, the normalisation and
the exact loss below are our choices, kept configurable (``causal``, ``normalize``).

Per sequence, with ``z_t = h_t / ||h_t||`` (``normalize``) and similarities ``s_ta = z_t·z_a / τ``:
for each anchor ``t`` with a valid label ``y_t`` (labels are the next-token targets, as for CE),
positives ``P(t) = {s != t valid : y_s = y_t}``, contrast set ``A(t) = {a != t valid}`` (both
restricted to ``s < t`` when ``causal``), and

    ℓ_t = -(1/|P(t)|) Σ_{p∈P(t)} [ s_tp - logsumexp_{a∈A(t)} s_ta ] = logsumexp_A s_t - mean_P s_t.

Anchors with an empty ``P(t)`` are skipped; the result is the mean of ``ℓ_t`` over all anchors of
the batch (every anchor weighs the same), and a zero that still carries a graph when there is none.

Under DDP and gradient accumulation "the batch" is the whole optimizer step: the engine counts the
step's anchors beforehand (``count``, all ranks and micro-batches) and each part is weighed by its
share of them, so 2 workers or 4 micro-batches optimise exactly the one-pass objective (``_part_factor``).

Cost: ``2·B·T²·H`` FLOPs forward. Memory is bounded by ``chunk_budget``: the ``[B, T, T]``
similarity matrix is processed in blocks of anchor rows ``[B, c, T]`` with ``B·c·T <= budget``. A
custom autograd function keeps only ``z`` between forward and backward and recomputes each block's
gradient, so autograd never holds the whole matrix either (when the whole matrix fits in the budget,
its gradient block is kept instead of recomputed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.losses.cross_entropy import IGNORE_INDEX, upcast
from trainables.losses.term import TermInputs

DEFAULT_CHUNK_BUDGET = 1 << 24  # elements of one [B, c, T] block: 64 MiB in float32


def chunk_rows(batch: int, seq_len: int, budget: int) -> int:
    """Anchor rows per block so that a ``[batch, rows, seq_len]`` block holds at most ``budget``
    elements (at least one row: a single ``[B, 1, T]`` row block is the smallest unit)."""
    if budget < 1:
        raise ValueError(f"simreg chunk_budget must be >= 1, got {budget}")
    return max(1, min(seq_len, budget // max(1, batch * seq_len)))


def _block(
    z: Tensor, labels: Tensor, valid: Tensor, t0: int, t1: int, temperature: float, causal: bool, want_grad: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Anchors ``t0:t1`` against every position of their sequence, one ``[B, c, T]`` block.

    Returns ``(loss_rows [B, c], is_anchor [B, c], g)``: ``ℓ_t`` on anchor rows (0 elsewhere) and, when
    ``want_grad``, ``g = dΣℓ/ds = softmax_A(s_t) - [a ∈ P(t)]/|P(t)|`` on anchor rows, 0 elsewhere.
    The exponentials of the logsumexp are reused for the softmax: one exp pass per block.
    """
    B, T = labels.shape
    s = torch.baddbmm(
        z.new_empty(B, t1 - t0, T), z[:, t0:t1], z.transpose(1, 2), beta=0.0, alpha=1.0 / temperature
    )  # [B, c, T]: s_ta = z_t·z_a / τ
    rows = torch.arange(t0, t1, device=z.device).unsqueeze(1)  # [c, 1]
    cols = torch.arange(T, device=z.device).unsqueeze(0)  # [1, T]
    allowed = cols < rows if causal else cols != rows  # [c, T]
    contrast = allowed.unsqueeze(0) & valid.unsqueeze(1)  # [B, c, T]
    pos = contrast & (labels[:, t0:t1].unsqueeze(2) == labels.unsqueeze(1))
    n_pos = pos.sum(dim=2)  # [B, c]
    is_anchor = (n_pos > 0) & valid[:, t0:t1]
    inv_pos = 1.0 / n_pos.clamp_min(1).to(z.dtype)
    pos_mean = torch.where(pos, s, 0.0).sum(dim=2).mul_(inv_pos)
    # rows that are no anchor are masked whole: their exponentials are exactly 0 (never inf·0)
    s.masked_fill_(~(contrast & is_anchor.unsqueeze(2)), float("-inf"))
    row_max = torch.where(is_anchor, s.amax(dim=2), 0.0)
    e = s.sub_(row_max.unsqueeze(2)).exp_()  # exp(s - max), 0 outside the contrast set
    denom = e.sum(dim=2)
    lse = row_max + torch.where(is_anchor, denom, 1.0).log()
    loss_rows = torch.where(is_anchor, lse - pos_mean, 0.0)
    if not want_grad:
        return loss_rows, is_anchor, None
    g = e.mul_(torch.where(is_anchor, 1.0 / denom, 0.0).unsqueeze(2))  # softmax over the contrast set
    g.sub_(pos * inv_pos.unsqueeze(2))
    return loss_rows, is_anchor, g


class _SupCon(torch.autograd.Function):
    """Mean anchor loss over the batch for already-normalised ``z`` ``[B, T, H]``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, z: Tensor, labels: Tensor, temperature: float, causal: bool, budget: int
    ) -> tuple[Tensor, Tensor]:
        """Returns ``(mean anchor loss, anchor count)``; the count carries no gradient."""
        B, T, _ = z.shape
        valid = labels != IGNORE_INDEX
        rows = chunk_rows(B, T, budget)
        total = z.new_zeros(())
        count = torch.zeros((), dtype=torch.long, device=z.device)
        keep: list[Tensor] = []
        for t0 in range(0, T, rows):
            t1 = min(T, t0 + rows)
            # when the whole matrix fits the budget, keep its gradient block and skip the recompute
            keep_grad = rows >= T and ctx.needs_input_grad[0]
            loss_rows, is_anchor, g = _block(z, labels, valid, t0, t1, temperature, causal, want_grad=keep_grad)
            total = total + loss_rows.sum()
            count = count + is_anchor.sum()
            if g is not None:
                keep.append(g)
        ctx.save_for_backward(z, labels, count, *keep)
        ctx.temperature, ctx.causal, ctx.rows = temperature, causal, rows
        ctx.mark_non_differentiable(count)
        return total / count.clamp_min(1).to(total.dtype), count

    @staticmethod
    def backward(  # type: ignore[override]
        ctx, grad_out: Tensor, _grad_count: Tensor | None
    ) -> tuple[Tensor | None, None, None, None, None]:
        z, labels, count, *keep = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        with torch.autocast(device_type=z.device.type, enabled=False):
            return _SupCon._grad(ctx, grad_out, z, labels, count, keep), None, None, None, None

    @staticmethod
    def _grad(ctx, grad_out: Tensor, z: Tensor, labels: Tensor, count: Tensor, keep: list[Tensor]) -> Tensor:
        T = z.shape[1]
        valid = labels != IGNORE_INDEX
        scale = grad_out / (count.clamp_min(1).to(z.dtype) * ctx.temperature)
        # s_ta = z_t·z_a/τ: anchor rows get G z, every position a gets Gᵀ z_anchors
        if keep:  # one block: (G + Gᵀ) z in a single matmul
            g = keep[0]
            return torch.bmm(g + g.transpose(1, 2), z).mul_(scale)
        grad = torch.zeros_like(z)
        for t0 in range(0, T, ctx.rows):
            t1 = min(T, t0 + ctx.rows)
            _, _, g = _block(z, labels, valid, t0, t1, ctx.temperature, ctx.causal, want_grad=True)
            assert g is not None
            grad[:, t0:t1].add_(torch.bmm(g, z))
            grad.add_(torch.bmm(g.transpose(1, 2), z[:, t0:t1]))
        return grad.mul_(scale)


def simreg_loss(
    hidden: Tensor,
    labels: Tensor,
    temperature: float,
    *,
    causal: bool = False,
    normalize: bool = True,
    chunk_budget: int = DEFAULT_CHUNK_BUDGET,
) -> Tensor:
    """Supervised-contrastive SimReg over ``hidden`` ``[B, T, H]`` with next-token ``labels`` ``[B, T]``.

    See the module docstring for the exact form (this project's interpretation). Computed in float32
    (half precision is upcast; float64 stays float64). ``chunk_budget`` bounds the elements of one
    similarity block and does not change the value.
    """
    return _simreg_and_count(hidden, labels, temperature, causal, normalize, chunk_budget)[0]


def _simreg_and_count(
    hidden: Tensor, labels: Tensor, temperature: float, causal: bool, normalize: bool, chunk_budget: int
) -> tuple[Tensor, Tensor]:
    """``simreg_loss`` and its anchor count (a long 0-d tensor)."""
    if hidden.dim() != 3 or labels.shape != hidden.shape[:2]:
        got = f"{tuple(hidden.shape)} and {tuple(labels.shape)}"
        raise ValueError(f"simreg: want hidden [B, T, H] and labels [B, T], got {got}")
    if not temperature > 0:
        raise ValueError(f"simreg: temperature must be > 0, got {temperature}")
    # under an autocast region the matmuls would silently drop to bf16: the loss math stays float32
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        x = upcast(hidden)
        z = F.normalize(x, dim=-1) if normalize else x
        return _SupCon.apply(z, labels.long(), float(temperature), bool(causal), int(chunk_budget))


def count(labels: Tensor, *, causal: bool = False, **_: object) -> Tensor:
    """Anchors of ``labels`` ``[B, T]``: valid positions with a positive in their sequence (an earlier one
    when ``causal``), as ``simreg_loss`` counts them; a 0-d long tensor, from the labels alone and
    without a host sync (the ``count`` hook of ``term.Term``).

    A stable sort by ``(sequence, label)`` puts equal labels of a sequence next to each other in
    position order: an anchor equals its predecessor there (causal: a later occurrence), or either
    neighbour (not causal: any label seen twice). Ignored positions get distinct negative keys.
    """
    B, T = labels.shape
    labels = labels.long()
    valid = labels != IGNORE_INDEX
    flat = torch.arange(B * T, device=labels.device).view(B, T)
    span = labels.max().clamp_min(0) + 1  # a tensor: no host sync
    keys = torch.where(valid, (flat // T) * span + labels, -1 - flat).flatten()
    ordered = keys.sort(stable=True).values
    same_prev = torch.zeros_like(ordered, dtype=torch.bool)
    same_prev[1:] = ordered[1:] == ordered[:-1]
    if causal:
        return same_prev.sum()
    same_next = torch.zeros_like(same_prev)
    same_next[:-1] = same_prev[1:]
    return (same_prev | same_next).sum()


def _part_factor(count: Tensor, inputs: TermInputs) -> Tensor | None:
    """When ``inputs`` is one part of a step (a DDP rank's share, a micro-batch), ``c · N / (C · n)`` for
    this part's anchors ``c`` and valid tokens ``n`` out of the step's ``C`` and ``N``; None for a whole batch.

    The engine weighs each part's loss by ``n / N`` (``trainables.train.engine``; DDP's average and the
    valid-token weights of ``trainables.train.reduce.combine_ranks`` together amount to it). Multiplying
    this part's anchor mean by the factor makes its share ``Σ_{anchors of the part} ℓ / C``: the sum over
    parts is the mean over ALL anchors of the step, what one pass over the whole batch computes,
    whatever the parts' anchor counts. The contrast set stays within each sequence, and a part holds
    whole sequences, so every ``ℓ_t`` is the one of the whole batch.
    """
    if inputs.count_total is None or inputs.n_valid_total is None:
        return None
    c, n = count.double(), inputs.n_valid.double().clamp_min(1)
    total_c, total_n = inputs.count_total.double(), inputs.n_valid_total.double()
    return torch.where(total_c > 0, c * total_n / (total_c.clamp_min(1) * n), 0.0).float()


def penalty(
    inputs: TermInputs,
    *,
    temperature: float,
    causal: bool = False,
    normalize: bool = True,
    chunk_budget: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    if inputs.hidden is None:
        raise ValueError("loss term 'simreg' needs hidden (the final hidden states [B, T, H])")
    budget = DEFAULT_CHUNK_BUDGET if chunk_budget is None else chunk_budget
    value, anchors = _simreg_and_count(inputs.hidden, inputs.labels, temperature, causal, normalize, budget)
    factor = _part_factor(anchors, inputs)
    if factor is not None:
        value = value * factor.to(value.device)
    return value, {"term_simreg": value.detach()}
