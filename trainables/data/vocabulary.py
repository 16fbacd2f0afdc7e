"""Which tokenizer a run's data is in and how many ids it has, resolved from the files themselves before
anything is tokenized: a ``shards:`` set's manifest (its own tokenizer, whatever ``data.tokenizer`` says),
an ``hf:PATH`` tokenizer file, a ``parquet:`` corpus's column statistics, or the ``bytes`` / ``bpe:N``
rule. The service sizes a sweep's model from this (through the sweep layer's admission) and a trial's
manifest records the tokenizer from it, so both see what the trial trains with. Every file is read
through the data roots (``trainables.data.roots``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from trainables.data.corpus import parquet_id_bound
from trainables.data.shards import is_shards_spec, read_set_manifest
from trainables.data.tokenizer import (
    BPETokenizer,
    ByteTokenizer,
    hf_tokenizer_path,
    parse_tokenizer_spec,
    read_hf_tokenizer,
)

PRETOKENIZED_SCHEMES = ("parquet:",)


@dataclass(frozen=True)
class DataVocabulary:
    """``tokenizer``: the spec the ids are in (None: pre-tokenized ids from elsewhere). ``vocab_size``: the
    ids' count (an upper bound for ``bpe:N``, which may learn fewer; None when known only once the ids are
    read: a ``parquet:`` corpus whose files keep no column statistics)."""

    tokenizer: str | None
    vocab_size: int | None


def resolve_vocabulary(corpus: str, tokenizer: str, roots: Iterable[str] | None = None,
                       column: str = "tokens") -> DataVocabulary:
    """The tokenizer and vocabulary of ``corpus`` read with ``tokenizer`` (``column``: a ``parquet:``
    corpus's id column); ``roots`` confine the files read (default: this process's data roots). Raises
    ``ValueError`` (``CorpusError``, ``DataFileError``) or ``DataRootError`` with a one-line message."""
    if is_shards_spec(corpus):
        manifest = read_set_manifest(corpus, roots)
        return DataVocabulary(tokenizer=_manifest_tokenizer(manifest), vocab_size=int(manifest["vocab_size"]))
    if corpus.startswith(PRETOKENIZED_SCHEMES):
        # the trial's vocabulary is the largest id + 1 (trainables.data.tokens), here from the files' statistics
        return DataVocabulary(tokenizer=None, vocab_size=parquet_id_bound(corpus, column, roots))
    kind, size = parse_tokenizer_spec(tokenizer)
    if kind == "bytes":
        return DataVocabulary(tokenizer=tokenizer, vocab_size=ByteTokenizer().vocab_size)
    if kind == "bpe":
        return DataVocabulary(tokenizer=tokenizer, vocab_size=size)
    loaded = BPETokenizer.from_json(read_hf_tokenizer(tokenizer, roots), tokenizer,
                                    where=str(hf_tokenizer_path(tokenizer)))
    return DataVocabulary(tokenizer=tokenizer, vocab_size=loaded.vocab_size)


def used_tokenizer(corpus: str, tokenizer: str, roots: Iterable[str] | None = None) -> str | None:
    """The tokenizer the ids of ``corpus`` are in: a shard set's own (its manifest, read without loading
    the tokenizer), None for pre-tokenized ids, else ``tokenizer``."""
    if is_shards_spec(corpus):
        return _manifest_tokenizer(read_set_manifest(corpus, roots))
    return None if corpus.startswith(PRETOKENIZED_SCHEMES) else tokenizer


def _manifest_tokenizer(manifest: dict[str, object]) -> str | None:
    declared = manifest.get("tokenizer")
    spec = declared.get("spec") if isinstance(declared, dict) else None
    return str(spec) if spec else None
