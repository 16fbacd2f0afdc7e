"""Corpora: where the text (or pre-tokenized ids) of a training run comes from.

Spec strings (``DataConfig.corpus``):

- ``stdlib`` — the ``.py`` files of the running interpreter's standard library, real text present on
  every machine. ``sysconfig.get_paths()["stdlib"]`` also holds ``site-packages`` (whatever happens to
  be installed) and, on Debian, ``dist-packages``; both are excluded, as are the test suites
  (``test``/``tests``/``idle_test`` folders) and caches, so the corpus is the library's own code
  (about 13 MB on Python 3.11). Its content differs between Python versions: the content hash is
  recorded in every manifest.
- ``text:PATH`` — one text file, or a directory of ``.txt``/``.md``/``.py`` files (recursively).
- ``parquet:PATH`` — a parquet file (or a directory of them) with a column of token ids, either one
  integer per row or a list of ids per row (pre-tokenized data from elsewhere).
- ``shards:DIR`` — token shards made by ``lossweep data prepare`` (``trainables.data.shards``), memory-mapped,
  never read whole; the only kind for pretraining-scale corpora.

Documents are ordered by relative path, so the corpus and its hash are the same on every machine.
Train/held-out split: a document is held out (``val`` here) when a hash of its relative path falls in
the lowest ``VAL_PERCENT`` percent, so adding a file never moves others between splits. A single
document (e.g. ``text:tinyshakespeare.txt``) is split instead at 90 % of its length. A run cuts the
held-out tokens into its validation and test splits (``trainables.data.splits``).
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.data.corpus_spec import CORPUS_KINDS, CorpusError, CorpusSpec
from trainables.data.roots import DataFileError, open_data_file, read_data_file

__all__ = ["CORPUS_KINDS", "CorpusError"]  # re-exported: the corpus's errors are raised from here too

VAL_PERCENT = 10
TEXT_SUFFIXES = (".txt", ".md", ".py")
STDLIB_EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"})


@dataclass(frozen=True)
class TextCorpus:
    """Documents of a text corpus, already split; ``content_hash`` covers names and bytes of all of them."""

    spec: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    content_hash: str


@dataclass(frozen=True)
class TokenCorpus:
    """Pre-tokenized ids (parquet corpora)."""

    spec: str
    train: np.ndarray
    val: np.ndarray
    content_hash: str


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The files of the ``stdlib`` corpus, in corpus order."""
    return _walk(root or stdlib_root(), (".py",), STDLIB_EXCLUDED_DIRS)


def _walk(root: Path, suffixes: tuple[str, ...], excluded: frozenset[str]) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in excluded and not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(suffixes))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def is_val_document(relpath: str) -> bool:
    """Whether the document of this key (relative path, or path#row) belongs to the validation split."""
    digest = hashlib.sha256(relpath.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < VAL_PERCENT


def _read_documents(root: Path, files: list[Path], spec: str, *, confined: bool = False) -> TextCorpus:
    docs: list[tuple[str, str]] = []
    hasher = hashlib.sha256()
    for path in files:
        rel = path.relative_to(root).as_posix() if path != root else path.name
        try:
            # the standard library is the interpreter's own, outside any data roots: checked as a file only
            raw = read_data_file(path, anywhere=not confined)
        except DataFileError as exc:
            raise CorpusError(f"corpus {spec!r}: {exc}") from None
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            continue
        hasher.update(rel.encode() + b"\0" + hashlib.sha256(raw).digest())
        docs.append((rel, text))
    if not docs:
        raise CorpusError(f"corpus {spec!r} at {root} is empty: no non-empty {'/'.join(TEXT_SUFFIXES)} files found")
    if len(docs) == 1:
        text = docs[0][1]
        cut = int(len(text) * (100 - VAL_PERCENT) / 100)
        train, val = (text[:cut],), (text[cut:],)
    else:
        train = tuple(t for rel, t in docs if not is_val_document(rel))
        val = tuple(t for rel, t in docs if is_val_document(rel))
        if not val:  # few files: still validate on something held out
            val, train = train[-1:], train[:-1]
        elif not train:
            train, val = val[:-1], val[-1:]
    return TextCorpus(spec=spec, train=train, val=val, content_hash=hasher.hexdigest())


def _existing(path_str: str, spec: str) -> Path:
    if not path_str:
        raise CorpusError(f"corpus {spec!r} names no path; write it as '{spec.split(':')[0]}:/path/to/data'")
    path = Path(path_str).expanduser()
    if not path.exists():
        raise CorpusError(f"corpus path {path} does not exist (from --data {spec!r}); check the path")
    return path


def load_corpus(spec: str, *, column: str = "tokens") -> TextCorpus | TokenCorpus:
    """Reads the corpus named by ``spec`` (see the module docstring)."""
    parsed = CorpusSpec.parse(spec)
    kind, rest = parsed.kind, parsed.path
    if kind == "stdlib":
        root = stdlib_root()
        if not root.is_dir():
            raise CorpusError(f"standard library folder {root} not found; pass --data text:PATH instead")
        return _read_documents(root, stdlib_files(root), spec)
    if kind == "text":
        path = _existing(rest, spec)
        if path.is_file():
            return _read_documents(path, [path], spec, confined=True)
        return _read_documents(path, _walk(path, TEXT_SUFFIXES, frozenset({"__pycache__"})), spec, confined=True)
    if kind == "parquet":
        return _load_parquet(_existing(rest, spec), spec, column)
    raise CorpusError(f"corpus {spec!r}: shard sets are opened with trainables.data.shards.open_shards")


def parquet_files(path: Path) -> list[Path]:
    """The files of a ``parquet:`` corpus, in corpus order."""
    return sorted(path.rglob("*.parquet")) if path.is_dir() else [path]


def parquet_id_bound(spec: str, column: str = "tokens", roots: Iterable[str] | None = None) -> int | None:
    """One more than the largest token id of a ``parquet:`` corpus -- the vocabulary a run of it builds --
    from the files' column statistics, without reading the ids; None when a file keeps no statistics."""
    bound = 0
    for f in parquet_files(_existing(spec.partition(":")[2], spec)):
        import pyarrow.parquet as pq

        try:
            fh = open_data_file(f, roots)
        except DataFileError as exc:
            raise CorpusError(f"corpus {spec!r}: {exc}") from None
        with fh:
            try:
                meta = pq.ParquetFile(fh).metadata
            except Exception as exc:
                raise CorpusError(f"corpus {spec!r}: {f} is not a readable parquet file ({exc})") from None
            for group in range(meta.num_row_groups):
                for i in range(meta.num_columns):
                    chunk = meta.row_group(group).column(i)
                    if chunk.path_in_schema.split(".")[0] != column:
                        continue
                    stats = chunk.statistics
                    if stats is None or not stats.has_min_max:
                        return None
                    bound = max(bound, int(stats.max) + 1)
    return bound or None


def _load_parquet(path: Path, spec: str, column: str) -> TokenCorpus:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = parquet_files(path)
    if not files:
        raise CorpusError(f"corpus {spec!r}: no .parquet files under {path}")
    chunks: list[np.ndarray] = []
    hasher = hashlib.sha256()
    for f in files:
        try:
            fh = open_data_file(f)  # the resolved, checked file, never the link
        except DataFileError as exc:
            raise CorpusError(f"corpus {spec!r}: {exc}") from None
        with fh:
            try:
                schema = pq.read_schema(fh)
            except Exception as exc:
                raise CorpusError(f"corpus {spec!r}: {f} is not a readable parquet file ({exc})") from None
            if column not in schema.names:
                raise CorpusError(
                    f"parquet file {f} has no column {column!r} (columns: {', '.join(schema.names)}); "
                    f"set the token-id column with data.column"
                )
            fh.seek(0)
            col = pq.read_table(fh, columns=[column]).column(column).combine_chunks()
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            col = pc.list_flatten(col)
        if not pa.types.is_integer(col.type):
            raise CorpusError(f"parquet column {column!r} in {f} holds {col.type}, not integer token ids")
        arr = col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        if arr.size and arr.min() < 0:
            raise CorpusError(f"parquet column {column!r} in {f} holds negative token ids")
        hasher.update(f.name.encode() + b"\0" + hashlib.sha256(arr.tobytes()).digest())
        chunks.append(arr)
    ids = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    if ids.size == 0:
        raise CorpusError(f"corpus {spec!r} at {path} is empty: column {column!r} holds no token ids")
    cut = int(ids.size * (100 - VAL_PERCENT) / 100)
    return TokenCorpus(spec=spec, train=ids[:cut], val=ids[cut:], content_hash=hasher.hexdigest())
