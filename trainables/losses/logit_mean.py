"""Logit-mean penalty: ``λ · mean_tokens (mean_i l_i)²``, the squared mean logit of each valid token.

The mean logit of a token is ``μ · h`` (``μ`` = mean output embedding, docs/papers.md §1): when the output
embeddings drift together, every logit of a token drifts with them, which is the divergence that OEC
studies. μ-loss penalises ``‖μ‖²`` (the cause, independent of the data); this term penalises the
effect on the tokens actually seen, ``(μ·h)²``, and leaves softmax probabilities and CE untouched
because a shift common to all logits of a token cancels in the softmax. Unlike the z-loss it does not
push ``log Z`` to 0 and so does not drag the logits negative; it pins their mean at 0 instead.
O(N·V) on top of CE: one mean over the vocabulary, accumulated in float32 without a float32 copy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.losses.cross_entropy import IGNORE_INDEX, valid_mean
from trainables.losses.term import TermInputs


def logit_mean_from_mask(logits: Tensor, valid: Tensor, n_valid: Tensor) -> Tensor:
    """Mean over the ``valid`` tokens (flattened mask ``[N]``) of the squared mean logit."""
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    means = logits.reshape(-1, logits.shape[-1]).mean(dim=-1, dtype=acc)  # [N]
    return valid_mean(torch.where(valid, means, 0.0).square(), n_valid)


def logit_mean_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """``mean over valid tokens (labels != -100) of (mean_i logits_i)**2``, unweighted, float32 inside
    (float64 stays float64). ``logits`` ``[..., V]``, ``labels`` ``[...]``; 0 with a graph when every
    label is ignored."""
    valid = labels.reshape(-1) != IGNORE_INDEX
    return logit_mean_from_mask(logits, valid, valid.sum())


def penalty(inputs: TermInputs) -> tuple[Tensor, dict[str, Tensor]]:
    value = logit_mean_from_mask(inputs.logits, inputs.valid, inputs.n_valid)
    return value, {"term_logit_mean": value.detach()}
