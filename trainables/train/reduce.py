"""Cross-rank reduction of scalar metrics.

Every decision that ends or shapes a run (divergence, reported metrics) is taken on reduced values,
so all ranks agree. ``combine_ranks`` is the one rule for what a run reports: means weighted by
valid-token counts, maxima for extremes and time; the engine applies it once and the Ray loop
reports the result as it is. ``IdentityReducer`` serves one process; ``TorchDistReducer`` all-reduces through
an initialised ``torch.distributed`` process group (gloo or NCCL).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from torch import Tensor

ReduceOp = Literal["mean", "sum", "max", "min"]


class Reducer(Protocol):
    def reduce(self, values: Mapping[str, float], op: ReduceOp = "mean") -> dict[str, float]:
        """The element-wise reduction of ``values`` over all ranks (every rank passes the same keys)."""
        ...

    def sum_tensor(self, tensor: Tensor) -> Tensor:
        """The element-wise sum of ``tensor`` over all ranks, on its own device: no host sync (on
        NCCL the all-reduce is queued on the GPU's stream like any kernel)."""
        ...


class IdentityReducer:
    """One process: reducing is a copy."""

    def reduce(self, values: Mapping[str, float], op: ReduceOp = "mean") -> dict[str, float]:
        if op not in ("mean", "sum", "max", "min"):
            raise ValueError(f"unknown reduce op {op!r}")
        return {k: float(v) for k, v in values.items()}

    def sum_tensor(self, tensor: Tensor) -> Tensor:
        return tensor


class TorchDistReducer:
    """All-reduce through the default ``torch.distributed`` group; keys are sorted so ranks line up."""

    def __init__(self, device: object | None = None) -> None:
        import torch
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("TorchDistReducer needs an initialised torch.distributed process group")
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        self.device = torch.device(device)  # type: ignore[arg-type]
        self.world_size = dist.get_world_size()

    def reduce(self, values: Mapping[str, float], op: ReduceOp = "mean") -> dict[str, float]:
        import torch
        import torch.distributed as dist

        ops = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        if op not in ops:
            raise ValueError(f"unknown reduce op {op!r}")
        keys = sorted(values)
        if not keys:
            return {}
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=ops[op])
        if op == "mean":
            t /= self.world_size
        return dict(zip(keys, t.tolist(), strict=True))

    def sum_tensor(self, tensor: Tensor) -> Tensor:
        import torch.distributed as dist

        out = tensor.clone()
        dist.all_reduce(out)
        return out


class NanSafeMaxReducer:
    """A ``Reducer`` whose "max" keeps a NaN from any rank (NaN compares false under MAX on some
    backends, so it would silently lose to a finite value); other ops pass through."""

    def __init__(self, inner: Reducer) -> None:
        self.inner = inner

    def reduce(self, values: Mapping[str, float], op: ReduceOp = "mean") -> dict[str, float]:
        if op != "max":
            return self.inner.reduce(values, op)
        clean = {k: (v if math.isfinite(v) else -math.inf) for k, v in values.items()}
        bad = {k: (0.0 if math.isfinite(v) else 1.0) for k, v in values.items()}
        top = self.inner.reduce(clean, "max")
        flags = self.inner.reduce(bad, "max")
        return {k: (math.nan if flags[k] > 0 else top[k]) for k in values}

    def sum_tensor(self, tensor: Tensor) -> Tensor:
        return self.inner.sum_tensor(tensor)


_WEIGHT = "\x00weight"  # cannot collide with a metric name


def combine_ranks(
    reducer: Reducer,
    means: Mapping[str, float],
    *,
    weight: float,
    maxima: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The one rule by which a run's ranks combine what they measured.

    ``means`` are this rank's means over its own valid tokens; each becomes the mean over ALL valid
    tokens of all ranks, ``Σ_r w_r·m_r / Σ_r w_r`` with ``weight`` = this rank's valid-token count, so a
    rank with more valid tokens counts for more, exactly as one process holding the whole batch would
    count them. Values equal on every rank (an embedding norm, a clipped gradient norm) come out
    unchanged. ``maxima`` are reduced with max (extremes, wall-clock time). With no valid token
    anywhere the means are plain means over ranks. One "sum" and at most one "max" all-reduce.
    """
    out = combine_rank_rows(reducer, [means], [weight])[0] if means else {}
    if maxima:
        out.update(reducer.reduce(maxima, "max"))
    return out


def combine_rank_rows(
    reducer: Reducer, rows: Sequence[Mapping[str, float]], weights: Sequence[float]
) -> list[dict[str, float]]:
    """:func:`combine_ranks`' rule for several rows at once (e.g. the steps of a report window, each
    with its own valid-token count), in one "sum" all-reduce."""
    sums: dict[str, float] = {}
    for i, (row, weight) in enumerate(zip(rows, weights, strict=True)):
        sums.update({f"{i}:{k}": float(v) * weight for k, v in row.items()})
        sums[f"{i}:{_WEIGHT}"] = float(weight)
    reduced = reducer.reduce(sums, "sum") if sums else {}
    out: list[dict[str, float]] = []
    for i, row in enumerate(rows):
        total = reduced[f"{i}:{_WEIGHT}"]
        if total > 0:
            out.append({k: reduced[f"{i}:{k}"] / total for k in row})
        else:  # no valid token on any rank: total is global, so every rank takes this branch
            out.append(reducer.reduce(dict(row), "mean") if row else {})
    return out
