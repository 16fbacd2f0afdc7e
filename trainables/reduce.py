"""Cross-rank reduction of scalar metrics.

Every decision that ends or shapes a run (divergence, reported metrics) is taken on reduced values,
so all ranks agree. ``IdentityReducer`` serves one process; ``TorchDistReducer`` all-reduces through
an initialised ``torch.distributed`` process group (gloo or NCCL).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

ReduceOp = Literal["mean", "sum", "max", "min"]


class Reducer(Protocol):
    def reduce(self, values: Mapping[str, float], op: ReduceOp = "mean") -> dict[str, float]:
        """The element-wise reduction of ``values`` over all ranks (every rank passes the same keys)."""
        ...


class IdentityReducer:
    """One process: reducing is a copy."""

    def reduce(self, values: Mapping[str, float], op: ReduceOp = "mean") -> dict[str, float]:
        if op not in ("mean", "sum", "max", "min"):
            raise ValueError(f"unknown reduce op {op!r}")
        return {k: float(v) for k, v in values.items()}


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
