"""Writing token shard sets (the format is described in :mod:`trainables.data.shards`): a streaming
writer that makes a set appear whole or not at all, ``write_shards`` for in-memory splits and
``synthetic_shards`` for benchmarks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from trainables.data.shards import (
    DEFAULT_SHARD_TOKENS,
    DTYPES,
    MANIFEST,
    SPLITS,
    TOKENIZER_FILE,
    ShardError,
    build_manifest,
    is_uri,
    local_path,
    shard_dtype,
    shard_name,
)


def check_out(out: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Refuses an ``out`` that already holds a shard set (or, locally, any files) unless ``overwrite``."""
    text = str(out).rstrip("/")
    if is_uri(text):
        from pyarrow import fs as pafs

        filesystem, root = pafs.FileSystem.from_uri(text)
        if filesystem.get_file_info(f"{root}/{MANIFEST}").type != pafs.FileType.NotFound and not overwrite:
            raise ShardError(f"{text} already holds a shard set; pass --overwrite to replace it")
        return
    final = local_path(text).resolve()
    if final.exists() and not overwrite:
        what = "a shard set" if (final / MANIFEST).exists() else "files"
        raise ShardError(f"{final} already holds {what}; pass --overwrite to replace it, or another --out")


class _Target:
    """Where a shard set is written: files open for streaming, then ``commit`` makes it visible."""

    def __init__(self, out: str, *, overwrite: bool) -> None:
        self.out = str(out).rstrip("/")
        self.overwrite = overwrite
        if is_uri(self.out):
            from pyarrow import fs as pafs

            check_out(self.out, overwrite=overwrite)
            self.fs, self.root = pafs.FileSystem.from_uri(self.out)
            # a prefix without a manifest is an interrupted write (or a replaced set): start clean
            if self.fs.get_file_info(self.root).type != pafs.FileType.NotFound:
                self.fs.delete_dir_contents(self.root, missing_dir_ok=True)
            self.fs.create_dir(self.root, recursive=True)
            self.staging: Path | None = None
        else:
            check_out(self.out, overwrite=overwrite)
            final = local_path(self.out).resolve()
            final.parent.mkdir(parents=True, exist_ok=True)
            self.final = final
            self.staging = final.parent / f".{final.name}.partial"
            if self.staging.exists():  # left by an interrupted run: start clean
                shutil.rmtree(self.staging)
            self.staging.mkdir()

    def open(self, name: str) -> BinaryIO:
        if self.staging is not None:
            return open(self.staging / name, "wb")  # closed by the writer
        return self.fs.open_output_stream(f"{self.root}/{name}")  # type: ignore[no-any-return]

    def commit(self, manifest: bytes) -> None:
        if self.staging is None:
            with self.fs.open_output_stream(f"{self.root}/{MANIFEST}") as out:
                out.write(manifest)
            return
        (self.staging / MANIFEST).write_bytes(manifest)
        if self.final.exists():  # --overwrite: move the old set aside, then drop it once the new one is in
            trash = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            os.rename(self.final, trash)
            os.rename(self.staging, self.final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(self.staging, self.final)
        self.staging = None

    def abort(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


@dataclass
class _SplitState:
    shards: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    stream: BinaryIO | None = None
    hasher: Any = None
    in_shard: int = 0


class ShardWriter:
    """Streams id arrays into fixed-size shards per split; ``finish`` writes the manifest and commits.

    Use as a context manager: leaving it by an exception removes everything written so far.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        vocab_size: int,
        eot_id: int,
        tokenizer_spec: str,
        tokenizer_file: bytes,
        dtype: str = "auto",
        shard_tokens: int = DEFAULT_SHARD_TOKENS,
        overwrite: bool = False,
    ) -> None:
        if shard_tokens < 1:
            raise ShardError(f"shard size must be >= 1 token, got {shard_tokens}")
        self.dtype = shard_dtype(vocab_size, dtype)
        self.np_dtype = np.dtype(DTYPES[self.dtype]).newbyteorder("<")
        self.vocab_size = vocab_size
        self.eot_id = eot_id
        self.shard_tokens = shard_tokens
        self.tokenizer = {
            "spec": tokenizer_spec,
            "file": TOKENIZER_FILE,
            "sha256": hashlib.sha256(tokenizer_file).hexdigest(),
        }
        self._target = _Target(str(out), overwrite=overwrite)
        self._splits = {s: _SplitState() for s in SPLITS}
        with self._target.open(TOKENIZER_FILE) as fh:
            fh.write(tokenizer_file)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            for state in self._splits.values():
                if state.stream is not None:
                    with contextlib.suppress(Exception):
                        state.stream.close()
            self._target.abort()

    @property
    def tokens(self) -> dict[str, int]:
        return {s: st.tokens for s, st in self._splits.items()}

    def add(self, split: str, ids: np.ndarray) -> None:
        """Appends ``ids`` (any integer dtype, all < vocab_size) to ``split``."""
        state = self._splits[split]
        arr = np.ascontiguousarray(ids, dtype=self.np_dtype)
        pos = 0
        while pos < len(arr):
            if state.stream is None:
                state.stream = self._target.open(shard_name(split, len(state.shards)))
                state.hasher = hashlib.sha256()
                state.in_shard = 0
            take = min(self.shard_tokens - state.in_shard, len(arr) - pos)
            chunk = arr[pos : pos + take].tobytes()
            state.stream.write(chunk)
            state.hasher.update(chunk)
            state.in_shard += take
            state.tokens += take
            pos += take
            if state.in_shard == self.shard_tokens:
                self._close_shard(split, state)

    def _close_shard(self, split: str, state: _SplitState) -> None:
        assert state.stream is not None
        state.stream.close()
        state.shards.append(
            {"file": shard_name(split, len(state.shards)), "tokens": state.in_shard, "sha256": state.hasher.hexdigest()}
        )
        state.stream = None

    def finish(self, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Closes the last shards, writes the manifest and makes the set visible; returns the manifest."""
        for split, state in self._splits.items():
            if state.stream is not None:
                self._close_shard(split, state)
            if state.tokens == 0:
                raise ShardError(f"the {split} split is empty: nothing to write")
        splits = {s: {"tokens": st.tokens, "shards": st.shards} for s, st in self._splits.items()}
        manifest = build_manifest(
            dtype=self.dtype,
            vocab_size=self.vocab_size,
            eot_id=self.eot_id,
            tokenizer=self.tokenizer,
            shard_tokens=self.shard_tokens,
            splits=splits,
            source=source,
        )
        self._target.commit((json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
        return manifest


def write_shards(
    out: str | os.PathLike[str],
    splits: Mapping[str, np.ndarray | Iterable[np.ndarray]],
    *,
    vocab_size: int,
    eot_id: int | None = None,
    tokenizer_spec: str = "none",
    tokenizer_file: bytes = b"{}",
    dtype: str = "auto",
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    overwrite: bool = False,
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes ``{"train": ids, "val": ids}`` (arrays, or iterables of arrays) as a shard set at ``out``
    (a path or a pyarrow filesystem URI); returns its manifest. ``eot_id`` defaults to the last id."""
    with ShardWriter(
        out,
        vocab_size=vocab_size,
        eot_id=vocab_size - 1 if eot_id is None else eot_id,
        tokenizer_spec=tokenizer_spec,
        tokenizer_file=tokenizer_file,
        dtype=dtype,
        shard_tokens=shard_tokens,
        overwrite=overwrite,
    ) as writer:
        for split in SPLITS:
            parts = splits[split]
            for part in [parts] if isinstance(parts, np.ndarray) else parts:
                writer.add(split, part)
        return writer.finish(source)


def synthetic_shards(
    out: str | os.PathLike[str],
    *,
    train_tokens: int,
    val_tokens: int,
    vocab_size: int = 50304,
    seed: int = 0,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    overwrite: bool = False,
) -> dict[str, Any]:
    """A shard set of uniformly random ids (for benchmarks and GPU checks that need no real text),
    written in chunks so memory stays small; deterministic per ``seed``."""
    rng = np.random.Generator(np.random.PCG64(seed))
    chunk = 1 << 22

    def ids(n: int) -> Iterator[np.ndarray]:
        for start in range(0, n, chunk):
            yield rng.integers(0, vocab_size, size=min(chunk, n - start), dtype=np.uint32)

    return write_shards(
        out,
        {"train": ids(train_tokens), "val": ids(val_tokens)},
        vocab_size=vocab_size,
        tokenizer_spec="synthetic",
        shard_tokens=shard_tokens,
        overwrite=overwrite,
        source={"synthetic": {"seed": seed}},
    )
