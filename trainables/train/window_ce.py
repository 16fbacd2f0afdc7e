"""Mean cross entropy of an evaluation and its standard error over windows.

The tokens of one window are correlated (they share a context), so the unit of sampling is the
window, not the token. With ``s_i`` the summed CE and ``n_i`` the valid tokens of window ``i`` of
``k``, the mean is the token-weighted ``m = Σs / Σn`` and its standard error the ratio estimator's:

    SE(m)² = k / (k - 1) · Σ (s_i - m·n_i)² / (Σn)²

which is ``sd(ce_i) / √k`` when every window has the same number of valid tokens. The sums
``Σs, Σn, Σs², Σs·n, Σn²`` are kept on the device in float64 (no host sync per batch) and summed over
ranks in one reduction, so a multi-rank evaluation gives the 1-rank numbers.
"""

from __future__ import annotations

import math

import torch

from trainables.losses.cross_entropy import log_z_and_target
from trainables.train.reduce import Reducer

_KEYS = ("s", "n", "ss", "sn", "nn", "k")


class WindowCE:
    """Accumulates ``(logits, labels)`` batches of whole windows; :meth:`result` gives mean, SE, tokens."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self._sums = torch.zeros(len(_KEYS), dtype=torch.float64, device=device)

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """``logits`` ``(b, T, V)``, ``labels`` ``(b, T)`` (-100 ignored): ``b`` windows."""
        log_z, target, valid = log_z_and_target(logits, labels)
        per_token = (log_z - target).double().where(valid, 0.0).view(labels.shape)
        s = per_token.sum(dim=1)  # (b,)
        n = valid.view(labels.shape).sum(dim=1).double()
        self._sums += torch.stack([s.sum(), n.sum(), (s * s).sum(), (s * n).sum(), (n * n).sum(), s.new_tensor(len(s))])

    def result(self, reducer: Reducer) -> tuple[float, float, int]:
        """``(mean CE, its standard error, valid tokens)`` over every rank's windows (one host sync, one
        all-reduce). The SE is NaN with fewer than two windows; the mean is NaN without a valid token."""
        local = dict(zip(_KEYS, self._sums.tolist(), strict=True))
        total = reducer.reduce(local, "sum")
        return window_mean_se(**total)


def window_mean_se(*, s: float, n: float, ss: float, sn: float, nn: float, k: float) -> tuple[float, float, int]:
    """The mean and its standard error from the sums of :class:`WindowCE` (see the module docstring)."""
    if n <= 0:
        return math.nan, math.nan, 0
    mean = s / n
    if k < 2:
        return mean, math.nan, int(n)
    spread = max(ss - 2 * mean * sn + mean * mean * nn, 0.0)  # Σ (s_i - m n_i)², >= 0 up to rounding
    return mean, math.sqrt(k / (k - 1) * spread) / n, int(n)
