"""A corpus as the user names it (``--data``, a spec's ``data.corpus``, ``lossweep data prepare``'s
source), parsed once into its kind and path: ``stdlib``, ``text:PATH``, ``parquet:PATH`` or ``shards:DIR``."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

CorpusKind = Literal["stdlib", "text", "parquet", "shards"]
KINDS: tuple[str, ...] = typing.get_args(CorpusKind)
#: How the kinds are written, for messages.
CORPUS_KINDS = "'stdlib', 'text:PATH', 'parquet:PATH' or 'shards:DIR'"


class CorpusError(ValueError):
    """A corpus that cannot be used (unknown kind, missing or empty path); the message says why."""


@dataclass(frozen=True)
class CorpusSpec:
    kind: CorpusKind
    path: str = ""  # empty for stdlib

    @classmethod
    def parse(cls, spec: str) -> CorpusSpec:
        if spec == "stdlib":
            return cls("stdlib")
        kind, sep, path = spec.partition(":")
        if not sep or kind not in KINDS or kind == "stdlib":
            raise CorpusError(f"unknown corpus {spec!r}; use {CORPUS_KINDS}")
        if not path:
            raise CorpusError(f"corpus {spec!r} names no path; write {kind}:PATH")
        return cls(kind, path)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.kind if self.kind == "stdlib" else f"{self.kind}:{self.path}"
