"""Batches: which token windows each rank trains on at each step.

The training tokens are cut into windows of ``seq_len + 1`` tokens (inputs and shifted targets) on a
grid whose start is shifted by a random offset each epoch; each epoch visits every window once in a
random order. Both the offset and the order come from ``(seed, epoch)`` alone, so the global batch of
step ``s`` is the windows at positions ``[s*B, (s+1)*B)`` of that endless sequence, whatever happened
before: resuming needs only the step, every method of a sweep sees the same data in the same order,
and rank ``r`` of ``W`` takes rows ``[r*B/W, (r+1)*B/W)`` of the global batch — disjoint from every
other rank's, and together exactly the 1-worker batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class DataSizeError(ValueError):
    """The corpus is too small for the requested batch shape."""


def shard_size(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise ValueError(
            f"data.batch_size ({global_batch}) is the global batch and must be divisible by the number "
            f"of workers ({world_size})"
        )
    return global_batch // world_size


@dataclass
class _Epoch:
    index: int
    offset: int
    order: np.ndarray


class BatchSampler:
    """Training batches of one rank, a pure function of ``(seed, step, rank, world_size)``."""

    def __init__(
        self,
        tokens: np.ndarray,
        *,
        seq_len: int,
        global_batch: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        name: str = "corpus",
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.tokens = tokens
        self.seq_len = seq_len
        self.global_batch = global_batch
        self.local_batch = shard_size(global_batch, world_size)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.window = seq_len + 1
        # the grid's offset is < window, so every epoch fits this many windows
        self.windows_per_epoch = (len(tokens) - seq_len) // self.window
        if self.windows_per_epoch < global_batch:
            need = global_batch * self.window + seq_len
            raise DataSizeError(
                f"{name} has {len(tokens):,} training tokens, fewer than one batch needs ({need:,} = "
                f"batch {global_batch} x (seq_len {seq_len} + 1) + slack); use a larger corpus or lower "
                f"--batch-size / --seq-len"
            )
        self._epoch: _Epoch | None = None

    def _epoch_plan(self, epoch: int) -> _Epoch:
        if self._epoch is None or self._epoch.index != epoch:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch, 0x5A17])))
            offset = int(rng.integers(0, self.window))
            order = rng.permutation(self.windows_per_epoch)
            self._epoch = _Epoch(epoch, offset, order)
        return self._epoch

    def starts(self, step: int) -> np.ndarray:
        """Token offsets of this rank's windows at ``step``."""
        first = step * self.global_batch + self.rank * self.local_batch
        out = np.empty(self.local_batch, dtype=np.int64)
        for i, pos in enumerate(range(first, first + self.local_batch)):
            plan = self._epoch_plan(pos // self.windows_per_epoch)
            out[i] = plan.offset + int(plan.order[pos % self.windows_per_epoch]) * self.window
        return out

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``, each ``(local_batch, seq_len)`` int64; ``y`` is ``x`` shifted by one token."""
        return windows(self.tokens, self.starts(step), self.seq_len)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "global_batch": self.global_batch, "seq_len": self.seq_len}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if (state["seed"], state["global_batch"], state["seq_len"]) != (self.seed, self.global_batch, self.seq_len):
            raise ValueError(f"sampler state {state} does not match this run's data order {self.state_dict()}")


def windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])  # (b, T+1)
    t = torch.from_numpy(rows)
    return t[:, :-1], t[:, 1:]


class EvalBatches:
    """Fixed validation windows (the first ``eval_batches * B`` of the validation split, in order),
    sharded across ranks like the training batches: every evaluation of every method sees the same
    tokens."""

    def __init__(
        self,
        tokens: np.ndarray,
        *,
        seq_len: int,
        global_batch: int,
        eval_batches: int,
        rank: int = 0,
        world_size: int = 1,
        name: str = "validation split",
    ) -> None:
        self.tokens = tokens
        self.seq_len = seq_len
        local = shard_size(global_batch, world_size)
        window = seq_len + 1
        available = len(tokens) // window
        if available < global_batch:
            raise DataSizeError(
                f"{name} has {len(tokens):,} tokens, fewer than one batch needs ({global_batch * window:,} = "
                f"batch {global_batch} x (seq_len {seq_len} + 1)); use a larger corpus or lower "
                f"--batch-size / --seq-len"
            )
        n_batches = min(eval_batches, available // global_batch)
        self.starts: list[np.ndarray] = []
        for b in range(n_batches):
            first = b * global_batch + rank * local
            self.starts.append(np.arange(first, first + local, dtype=np.int64) * window)

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self):  # type: ignore[no-untyped-def]
        for s in self.starts:
            yield windows(self.tokens, s, self.seq_len)
