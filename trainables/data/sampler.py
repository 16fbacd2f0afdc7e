"""Batches: which token windows each rank trains on at each step.

The training tokens are cut into windows of ``seq_len + 1`` tokens (inputs and shifted targets) on a
grid whose start is shifted by a random offset each epoch; each epoch visits every window once in a
random order. Both the offset and the order come from ``(seed, epoch)`` alone, so the global batch of
step ``s`` is the windows at positions ``[s*B, (s+1)*B)`` of that endless sequence, whatever happened
before: resuming needs only the step, every method of a sweep sees the same data in the same order,
and rank ``r`` of ``W`` takes rows ``[r*B/W, (r+1)*B/W)`` of the global batch — disjoint from every
other rank's, and together exactly the 1-worker batch.

With ``sampling="random"`` (the official OEC code's order) the windows are instead drawn at random
with replacement: the global batch of step ``s`` is ``B`` start offsets drawn uniformly from every
position of the training tokens by a generator keyed on ``(seed, s)``, so it too is a pure function of
the step (resumable from a checkpoint by the step alone) and the same for every method of a sweep.

An epoch's order is a stored permutation while it has at most ``STORED_ORDER_MAX_WINDOWS`` windows;
above that (pretraining-scale shard corpora) it is a keyed Feistel permutation computed per window, so
the sampler's memory does not grow with the corpus (13B tokens in windows of 129 would otherwise be a
0.8 GB order array per rank). ``tokens`` may be any sliceable sequence of ids with a length: a numpy
array, a memory map, or the shard view of ``trainables.data.shards``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from trainables.train.config import SAMPLINGS

STORED_ORDER_MAX_WINDOWS = 1 << 20  # 8 MB of int64 order per epoch; above it, a computed permutation
_FEISTEL_ROUNDS = 6


class TokenSequence(Protocol):
    """What the sampler reads: a length and contiguous slices ``tokens[a:b]`` (an array of ids)."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice, /) -> Any: ...


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
    order: np.ndarray | None  # the stored permutation, or None when ``keys`` compute it
    keys: np.ndarray | None = None

    def window_index(self, positions: np.ndarray, n: int) -> np.ndarray:
        if self.order is not None:
            return self.order[positions]
        assert self.keys is not None
        return feistel_permute(positions, n, self.keys)


def _round(half: np.ndarray, key: np.uint64, mask: np.uint64) -> np.ndarray:
    # splitmix64's finaliser: a cheap, well-mixed keyed function of one half
    z = (half + key) * np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    return z & mask


def feistel_permute(positions: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """A bijection of ``[0, n)`` applied to ``positions``: a balanced Feistel network on the smallest
    even number of bits that holds ``n``, with cycle-walking back into range (fewer than 4 rounds on
    average, since that domain is below ``4n``). Memory is O(len(positions)), not O(n)."""
    bits = max(2, int(n - 1).bit_length())
    bits += bits % 2
    half = bits // 2
    mask = np.uint64((1 << half) - 1)
    x = np.asarray(positions, dtype=np.uint64).copy()
    todo = np.ones(len(x), dtype=bool)
    with np.errstate(over="ignore"):
        while todo.any():
            v = x[todo]
            left, right = v >> np.uint64(half), v & mask
            for key in keys:
                left, right = right, left ^ _round(right, np.uint64(key), mask)
            v = (left << np.uint64(half)) | right
            x[todo] = v
            todo[todo] = v >= np.uint64(n)
    return x.astype(np.int64)


class BatchSampler:
    """Training batches of one rank, a pure function of ``(seed, step, rank, world_size)``."""

    def __init__(
        self,
        tokens: TokenSequence,
        *,
        seq_len: int,
        global_batch: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        name: str = "corpus",
        sampling: str = "epoch",
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"data.sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
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
        self.sampling = sampling
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
            if self.windows_per_epoch <= STORED_ORDER_MAX_WINDOWS:
                self._epoch = _Epoch(epoch, offset, rng.permutation(self.windows_per_epoch))
            else:
                keys = rng.integers(0, 2**63, size=_FEISTEL_ROUNDS, dtype=np.int64).astype(np.uint64)
                self._epoch = _Epoch(epoch, offset, None, keys)
        return self._epoch

    def starts(self, step: int) -> np.ndarray:
        """Token offsets of this rank's windows at ``step``."""
        if self.sampling == "random":
            return self._random_starts(step)
        first = step * self.global_batch + self.rank * self.local_batch
        positions = np.arange(first, first + self.local_batch, dtype=np.int64)
        epochs = positions // self.windows_per_epoch
        out = np.empty(self.local_batch, dtype=np.int64)
        for epoch in np.unique(epochs):  # one epoch, or two where the batch straddles a boundary
            sel = epochs == epoch
            plan = self._epoch_plan(int(epoch))
            index = plan.window_index(positions[sel] % self.windows_per_epoch, self.windows_per_epoch)
            out[sel] = plan.offset + index * self.window
        return out

    def _random_starts(self, step: int) -> np.ndarray:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, step, 0x2A4D])))
        starts = rng.integers(0, len(self.tokens) - self.window + 1, size=self.global_batch, dtype=np.int64)
        first = self.rank * self.local_batch
        return starts[first : first + self.local_batch]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``, each ``(local_batch, seq_len)`` int64; ``y`` is ``x`` shifted by one token."""
        return windows(self.tokens, self.starts(step), self.seq_len)

    def state_dict(self) -> dict[str, int | str]:
        order = {"seed": self.seed, "global_batch": self.global_batch, "seq_len": self.seq_len}
        return {**order, "sampling": self.sampling}

    def load_state_dict(self, state: dict[str, int | str]) -> None:
        # checkpoints written before random sampling existed hold epoch-ordered runs
        if {"sampling": "epoch", **state} != self.state_dict():
            raise ValueError(f"sampler state {state} does not match this run's data order {self.state_dict()}")


def windows(tokens: TokenSequence, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = seq_len + 1
    rows = np.empty((len(starts), n), dtype=np.int64)  # (b, T+1)
    for i, s in enumerate(starts.tolist()):
        rows[i] = tokens[s : s + n]  # from a memory map: only these pages are read
    t = torch.from_numpy(rows)
    return t[:, :-1], t[:, 1:]


class EvalWindows:
    """The fixed evaluation windows of one split: ``ceil(n_tokens / seq_len)`` windows of ``seq_len``
    predicted tokens (capped by what the split holds), spread evenly over the whole split rather than
    taken from one region of it. They depend only on the split and the settings, so every evaluation
    of every trial of a sweep sees the same tokens (comparisons are paired).

    Window ``i`` goes to rank ``i % world_size``; each rank iterates its windows in batches of at most
    ``local_batch``. Together the ranks evaluate exactly the 1-worker windows.
    """

    def __init__(
        self,
        tokens: TokenSequence,
        *,
        seq_len: int,
        n_tokens: int,
        local_batch: int,
        rank: int = 0,
        world_size: int = 1,
        name: str = "validation split",
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.tokens = tokens
        self.seq_len = seq_len
        self.local_batch = max(1, local_batch)
        window = seq_len + 1
        available = len(tokens) // window
        if available < 1:
            raise DataSizeError(
                f"{name} has {len(tokens):,} tokens, fewer than one window needs ({window:,} = seq_len {seq_len} "
                f"+ 1); use a larger corpus or lower --seq-len"
            )
        self.num_windows = min(max(1, math.ceil(n_tokens / seq_len)), available)
        # Evenly spaced starts; the spacing is >= window because num_windows <= available.
        span = len(tokens) - window
        grid = np.arange(self.num_windows, dtype=np.int64)
        every = (grid * span) // (self.num_windows - 1) if self.num_windows > 1 else grid
        self.starts = every[rank::world_size]

    @property
    def num_tokens(self) -> int:
        """Predicted tokens over all ranks' windows."""
        return self.num_windows * self.seq_len

    def __len__(self) -> int:
        return math.ceil(len(self.starts) / self.local_batch)

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(0, len(self.starts), self.local_batch):
            yield windows(self.tokens, self.starts[i : i + self.local_batch], self.seq_len)
