"""Tokens for one training run: corpus -> tokenizer -> token arrays, cached on disk.

The cache entry of a text corpus is keyed by a hash of (corpus content, tokenizer spec) and holds the
tokenizer and the train/held-out id arrays; the held-out ids become the validation and test splits
(``trainables.data.splits``). It is built in a temporary folder and renamed into
place in one step, so a crash mid-write never leaves an entry that later loads; concurrent builders
(several DDP ranks, several trials) race harmlessly: the first rename wins, the others discard theirs.

Default location: ``DataConfig.cache_dir``, else ``$LOSSWEEP_CACHE_DIR``, else ``~/.cache/lossweep``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.data.cache import default_cache_root
from trainables.data.corpus import CorpusError, TextCorpus, load_corpus
from trainables.data.sampler import BatchSampler, DataSizeError, EvalWindows
from trainables.data.shards import ShardedTokens, is_shards_spec, open_shards
from trainables.data.splits import TokenRange, split_held_out, split_tokens
from trainables.data.tokenizer import (
    BPETokenizer,
    ByteTokenizer,
    load_tokenizer,
    parse_tokenizer_spec,
    tokenizer_identity,
    train_tokenizer,
)
from trainables.train.config import DataConfig

__all__ = [
    "BatchSampler",
    "CorpusError",
    "DataSizeError",
    "Dataset",
    "EvalWindows",
    "cache_root",
    "load_dataset",
]

CACHE_FORMAT = 1


@dataclass(frozen=True)
class Dataset:
    """Token ids of the three splits, the tokenizer (None for pre-tokenized corpora) and provenance."""

    train: np.ndarray | ShardedTokens
    val: TokenRange
    test: TokenRange
    vocab_size: int
    corpus_hash: str
    tokenizer: ByteTokenizer | BPETokenizer | None
    spec: str
    cache_path: Path | None = None

    def split_tokens(self) -> dict[str, int]:
        """Tokens in each split (train, val, test), as manifests record them."""
        return split_tokens(self.train, self.val, self.test)


def _dataset(train: np.ndarray | ShardedTokens, held_out: np.ndarray | ShardedTokens, **fields: object) -> Dataset:
    val, test = split_held_out(held_out)
    return Dataset(train=train, val=val, test=test, **fields)  # type: ignore[arg-type]


def cache_root(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_root()


def cache_key(corpus_hash: str, tokenizer_spec: str) -> str:
    blob = f"lossweep-tokens/{CACHE_FORMAT}/{corpus_hash}/{tokenizer_spec}".encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def load_dataset(cfg: DataConfig) -> Dataset:
    """The run's tokens; raises ``CorpusError``/``ValueError`` with a one-line message on bad input.

    A ``shards:DIR`` corpus is opened in O(1) of its size: memory maps, the manifest's vocabulary and
    content hash; its tokenizer is the one it was prepared with (``cfg.tokenizer`` does not apply)."""
    if is_shards_spec(cfg.corpus):
        shards = open_shards(cfg.corpus, cache_dir=cache_root(cfg))
        return _dataset(
            shards.train,
            shards.val,
            vocab_size=shards.vocab_size,
            corpus_hash=shards.content_hash,
            tokenizer=shards.tokenizer(),
            spec=cfg.corpus,
        )
    parse_tokenizer_spec(cfg.tokenizer)  # fail on a bad spec before reading any corpus
    corpus = load_corpus(cfg.corpus, column=cfg.column)
    if not isinstance(corpus, TextCorpus):
        vocab = int(max(corpus.train.max(initial=0), corpus.val.max(initial=0))) + 1
        return _dataset(
            corpus.train,
            corpus.val,
            vocab_size=vocab,
            corpus_hash=corpus.content_hash,
            tokenizer=None,
            spec=cfg.corpus,
        )
    try:
        identity = tokenizer_identity(cfg.tokenizer)
    except OSError as exc:
        raise CorpusError(f"tokenizer {cfg.tokenizer!r}: cannot read its file ({exc.strerror or exc})") from None
    entry = cache_root(cfg) / "tokens" / cache_key(corpus.content_hash, identity)
    loaded = _load_entry(entry, cfg.tokenizer)
    if loaded is None:
        if entry.exists():  # unreadable leftovers (another format version, manual edits): replace them
            _discard(entry)
        _build_entry(entry, corpus, cfg.tokenizer)
        loaded = _load_entry(entry, cfg.tokenizer)
        if loaded is None:
            raise RuntimeError(f"token cache entry {entry} could not be read back after writing it")
    tok, train, val = loaded
    return _dataset(
        train,
        val,
        vocab_size=tok.vocab_size,
        corpus_hash=corpus.content_hash,
        tokenizer=tok,
        spec=cfg.corpus,
        cache_path=entry,
    )


def _load_entry(entry: Path, spec: str) -> tuple[ByteTokenizer | BPETokenizer, np.ndarray, np.ndarray] | None:
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if meta.get("format") != CACHE_FORMAT or meta.get("tokenizer") != spec:
            return None
        tok = load_tokenizer(spec, entry / "tokenizer.json")
        train = np.load(entry / "train.npy", mmap_mode="r")
        val = np.load(entry / "val.npy", mmap_mode="r")
    except Exception:  # missing, partial or foreign files: treat as absent and rebuild
        return None
    if len(train) != meta.get("train_tokens") or len(val) != meta.get("val_tokens"):
        return None
    return tok, train, val


def _discard(entry: Path) -> None:
    trash = entry.with_name(f".{entry.name}.trash-{os.getpid()}")
    try:
        os.rename(entry, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _build_entry(entry: Path, corpus: TextCorpus, spec: str) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        tok = train_tokenizer(spec, corpus.train)
        train = tok.encode_documents(corpus.train)
        val = tok.encode_documents(corpus.val)
        tok.save(tmp / "tokenizer.json")
        np.save(tmp / "train.npy", train)
        np.save(tmp / "val.npy", val)
        meta = {
            "format": CACHE_FORMAT,
            "corpus": corpus.spec,
            "corpus_hash": corpus.content_hash,
            "tokenizer": spec,
            "vocab_size": tok.vocab_size,
            "train_tokens": len(train),
            "val_tokens": len(val),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "meta.json").exists():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
