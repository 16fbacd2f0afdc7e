"""Tokenizers: ``bytes`` (256 byte values + ``<|endoftext|>``), ``bpe:N`` (byte-level BPE trained
with Hugging Face ``tokenizers`` on the training split, vocabulary N including the special token) and
``hf:PATH`` (a Hugging Face ``tokenizer.json`` file, e.g. GPT-2's; it must know ``<|endoftext|>``,
which ends every document)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from trainables.data.roots import read_data_file

EOT = "<|endoftext|>"
MIN_BPE_VOCAB = 257  # the 256 byte symbols + EOT


class Tokenizer(Protocol):
    spec: str

    @property
    def vocab_size(self) -> int: ...

    @property
    def eot_id(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def encode_documents(self, docs: Sequence[str]) -> np.ndarray:
        """All documents, each followed by EOT, as one id array."""
        ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def save(self, path: Path) -> None: ...


def parse_tokenizer_spec(spec: str) -> tuple[str, int | None]:
    """``"bytes"`` -> ("bytes", None); ``"bpe:4096"`` -> ("bpe", 4096); ``"hf:PATH"`` -> ("hf", None);
    anything else: ValueError."""
    if spec == "bytes":
        return "bytes", None
    kind, _, size = spec.partition(":")
    if kind == "hf":
        if not size:
            raise ValueError(f"tokenizer {spec!r}: name the file as hf:/path/to/tokenizer.json")
        return "hf", None
    if kind == "bpe":
        try:
            n = int(size)
        except ValueError:
            raise ValueError(f"tokenizer {spec!r}: write the BPE vocabulary size as bpe:N, e.g. bpe:4096") from None
        if n < MIN_BPE_VOCAB:
            raise ValueError(f"tokenizer {spec!r}: BPE vocabulary must be >= {MIN_BPE_VOCAB} (bytes + EOT)")
        return "bpe", n
    raise ValueError(f"unknown tokenizer {spec!r}; use 'bytes', 'bpe:N' (e.g. bpe:4096) or 'hf:PATH' (tokenizer.json)")


def hf_tokenizer_path(spec: str) -> Path:
    """The file of an ``hf:PATH`` spec."""
    return Path(spec.partition(":")[2]).expanduser()


def read_hf_tokenizer(spec: str, roots: Iterable[str] | None = None) -> bytes:
    """The bytes of an ``hf:PATH`` tokenizer file, read through the data roots (``trainables.data.roots``:
    ``roots``, else this process's): a regular file of bounded size, or a one-line error."""
    return read_data_file(hf_tokenizer_path(spec), roots)


def tokenizer_identity(spec: str) -> str:
    """The spec, plus the file's hash for ``hf:PATH``: a tokenizer file edited in place is another
    tokenizer, so caches keyed by this never serve ids of the old one."""
    if parse_tokenizer_spec(spec)[0] != "hf":
        return spec
    return f"{spec}#sha256={hashlib.sha256(read_hf_tokenizer(spec)).hexdigest()}"


class ByteTokenizer:
    spec = "bytes"

    @property
    def vocab_size(self) -> int:
        return 257

    @property
    def eot_id(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_documents(self, docs: Sequence[str]) -> np.ndarray:
        parts: list[np.ndarray] = []
        eot = np.array([self.eot_id], dtype=np.uint16)
        for doc in docs:
            parts.append(np.frombuffer(doc.encode("utf-8"), dtype=np.uint8).astype(np.uint16))
            parts.append(eot)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)

    def decode(self, ids: Iterable[int]) -> str:
        out = bytearray()
        pieces: list[str] = []
        for i in ids:
            if i == self.eot_id:
                pieces.append(out.decode("utf-8", errors="replace"))
                pieces.append(EOT)
                out = bytearray()
            else:
                out.append(int(i))
        pieces.append(out.decode("utf-8", errors="replace"))
        return "".join(pieces)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"type": "bytes"}))


class BPETokenizer:
    """Any Hugging Face ``tokenizers`` tokenizer: one trained here (``bpe:N``) or loaded (``hf:PATH``)."""

    def __init__(self, tok: object, spec: str) -> None:
        self._tok = tok
        self.spec = spec

    @classmethod
    def train(cls, docs: Sequence[str], vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
        return cls(tok, f"bpe:{vocab_size}")

    @classmethod
    def load(cls, path: Path, spec: str) -> BPETokenizer:
        """A tokenizer.json this process wrote itself (a token cache entry)."""
        return cls.from_json(path.read_bytes(), spec, where=str(path))

    @classmethod
    def from_json(cls, blob: bytes, spec: str, *, where: str) -> BPETokenizer:
        """A tokenizer from the bytes of a tokenizer.json read from ``where`` (named in errors)."""
        from tokenizers import Tokenizer as HFTokenizer

        try:
            tok = HFTokenizer.from_str(blob.decode("utf-8"))
        except Exception as exc:  # unreadable or not a tokenizer.json: one line naming the file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"tokenizer {spec!r}: {where} is not a readable tokenizer.json ({first[:200]})") from None
        if tok.token_to_id(EOT) is None:
            raise ValueError(f"tokenizer {spec!r}: {where} has no {EOT} token, which lossweep puts after each document")
        return cls(tok, spec)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())  # type: ignore[attr-defined]

    @property
    def eot_id(self) -> int:
        return int(self._tok.token_to_id(EOT))  # type: ignore[attr-defined]

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text).ids)  # type: ignore[attr-defined]

    def encode_documents(self, docs: Sequence[str]) -> np.ndarray:
        dtype = np.uint16 if self.vocab_size <= 2**16 else np.uint32
        eot = self.eot_id
        parts: list[np.ndarray] = []
        batch = 256
        for start in range(0, len(docs), batch):
            for enc in self._tok.encode_batch(list(docs[start : start + batch])):  # type: ignore[attr-defined]
                parts.append(np.asarray([*enc.ids, eot], dtype=dtype))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    def decode(self, ids: Iterable[int]) -> str:
        return str(self._tok.decode([int(i) for i in ids], skip_special_tokens=False))  # type: ignore[attr-defined]

    def save(self, path: Path) -> None:
        self._tok.save(str(path))  # type: ignore[attr-defined]


def train_tokenizer(spec: str, train_docs: Sequence[str]) -> ByteTokenizer | BPETokenizer:
    """The tokenizer of ``spec``: trained on ``train_docs`` for ``bpe:N``, else ready-made."""
    kind, size = parse_tokenizer_spec(spec)
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "hf":
        return BPETokenizer.from_json(read_hf_tokenizer(spec), spec, where=str(hf_tokenizer_path(spec)))
    assert size is not None
    return BPETokenizer.train(train_docs, size)


def load_tokenizer(spec: str, path: Path) -> ByteTokenizer | BPETokenizer:
    """The tokenizer of ``spec`` as saved at ``path`` (by ``save``) in this process's own cache."""
    kind, _ = parse_tokenizer_spec(spec)
    return ByteTokenizer() if kind == "bytes" else BPETokenizer.load(path, spec)


def tokenizer_from_bytes(spec: str, blob: bytes, *, where: str = "tokenizer.json") -> ByteTokenizer | BPETokenizer:
    """The tokenizer of ``spec`` from the bytes of its saved file (a shard set's, a Ray Data actor's copy)."""
    kind, _ = parse_tokenizer_spec(spec)
    return ByteTokenizer() if kind == "bytes" else BPETokenizer.from_json(blob, spec, where=where)
