"""The three splits of every corpus: train, validation and test.

Each corpus kind holds out part of its tokens (``trainables.data.corpus``: whole documents chosen by a
hash of their path, or the tail of a single document or token column; ``lossweep data prepare``: the
``val`` shards). The held-out tokens are then cut in two at one point, here and for every kind alike:
the first ``1 - TEST_SHARE`` of them are the validation split (what the search, ASHA, the divergence
rule and live curves see), the rest the test split (evaluated at the end of a finished trial, never by
a search decision). The three are disjoint by construction: train and held-out are different tokens,
and the two halves of the held-out tokens are disjoint ranges of one sequence.

The cut is a view (``TokenRange``), so a memory-mapped shard set is still opened in O(1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The splits, in the order manifests list them.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: The share of the held-out tokens that forms the test split.
TEST_SHARE = 0.5


class TokenRange:
    """``tokens[start:stop]`` as a sequence read by contiguous slices, without copying the parent."""

    def __init__(self, tokens: Any, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= len(tokens):
            raise ValueError(f"range [{start}, {stop}) outside a sequence of {len(tokens)} tokens")
        self.tokens = tokens
        self.start = start
        self.stop = stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("a token range is read by slices, tokens[a:b]")
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise TypeError("a token range is read by contiguous slices, tokens[a:b]")
        return np.asarray(self.tokens[self.start + start : self.start + max(start, stop)])


def split_held_out(held_out: Any) -> tuple[TokenRange, TokenRange]:
    """``(validation, test)``: the held-out tokens cut at ``1 - TEST_SHARE`` of their length."""
    n = len(held_out)
    cut = n - int(n * TEST_SHARE)
    return TokenRange(held_out, 0, cut), TokenRange(held_out, cut, n)


def split_tokens(train: Any, val: Any, test: Any) -> dict[str, int]:
    """Each split's token count, keyed as :data:`SPLITS`."""
    return dict(zip(SPLITS, (len(train), len(val), len(test)), strict=True))
