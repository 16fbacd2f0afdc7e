"""Token shards: a prepared corpus on disk, read through memory maps.

A shard set is a folder (local path, or any pyarrow filesystem URI such as ``s3://`` for writing):

```
manifest.json        format, dtype, vocab_size, eot_id, tokenizer (spec, file, sha256), shard_tokens,
                     per split: token count and its shards (file, tokens, sha256), content_hash, source
tokenizer.json       the tokenizer that made the ids (``bytes``: {"type": "bytes"})
train-00000.bin ...  raw little-endian ids, ``shard_tokens`` per file (the last of a split may be shorter)
val-00000.bin ...
```

Ids are ``uint16`` when the vocabulary fits (V <= 65,536), else ``uint32``. ``content_hash`` is a
hash over the dtype, the vocabulary, the tokenizer file's hash and every shard's hash, computed once
while writing; opening a shard set only reads the manifest and checks every file's size (O(number of
shards), whatever their bytes), so a trial starts in the same time on 1 MB and on 100 GB. ``verify``
re-hashes the files when that is wanted.

Writers (:mod:`trainables.data.shard_writer`) make a set appear whole or not at all: locally the files go
to a hidden sibling folder (``.NAME.partial``) renamed into place at the end; on an object store the
manifest is written last and is the set's commit mark (a prefix without it is not a shard set, and a rerun clears it).

Every file of a set that a trial opens is opened through ``_open_member``.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from trainables.data.corpus import CorpusError
from trainables.data.roots import MAX_WHOLE_READ_BYTES, DataFileError, open_data_file

FORMAT = "lossweep-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
SPLITS = ("train", "val")
DEFAULT_SHARD_TOKENS = 1 << 27  # 256 MB of uint16 per shard
SCHEME = "shards:"
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


class ShardError(CorpusError):
    """A shard set that cannot be written or opened; the message names the file and the fix."""


def shard_dtype(vocab_size: int, requested: str = "auto") -> str:
    """``uint16`` when every id of a vocabulary of ``vocab_size`` fits in it, else ``uint32``;
    a ``requested`` dtype the vocabulary does not fit in is refused."""
    if requested not in ("auto", *DTYPES):
        raise ShardError(f"shard dtype {requested!r}: use auto, uint16 or uint32")
    for name, dtype in DTYPES.items():
        capacity = int(np.iinfo(dtype).max) + 1
        if requested == name and vocab_size > capacity:
            raise ShardError(
                f"the tokenizer's vocabulary ({vocab_size:,} ids) does not fit {name} shards (at most "
                f"{capacity:,}); use --dtype auto or uint32"
            )
        if requested in (name, "auto") and vocab_size <= capacity:
            return name
    raise ShardError(f"the tokenizer's vocabulary ({vocab_size:,} ids) does not fit uint32 shards")


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.bin"


# ---------------------------------------------------------------------------------------------- format
def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> Path:
    return Path(path[len("file://") :] if path.startswith("file://") else path).expanduser()


def build_manifest(
    *,
    dtype: str,
    vocab_size: int,
    eot_id: int,
    tokenizer: Mapping[str, str],
    shard_tokens: int,
    splits: Mapping[str, Any],
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a shard set (see the module docstring); ``content_hash`` derives from the rest."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "dtype": dtype,
        "vocab_size": vocab_size,
        "eot_id": eot_id,
        "tokenizer": dict(tokenizer),
        "shard_tokens": shard_tokens,
        "splits": dict(splits),
        "content_hash": content_hash(dtype, vocab_size, tokenizer["sha256"], splits),
        "source": dict(source or {}),
    }


def content_hash(dtype: str, vocab_size: int, tokenizer_sha256: str, splits: Mapping[str, Any]) -> str:
    h = hashlib.sha256(f"{FORMAT}/{FORMAT_VERSION}/{dtype}/{vocab_size}/{tokenizer_sha256}".encode())
    for split in SPLITS:
        for shard in splits[split]["shards"]:
            h.update(f"/{split}/{shard['tokens']}/{shard['sha256']}".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- reading
class ShardedTokens:
    """The ids of one split: a read-only sequence over its shards' memory maps. A slice within one
    shard is a view of the map; one across a shard boundary is a small copy.

    Every page a slice touches stays mapped into the process (the kernel also maps its neighbours,
    ~64 kB per fault), so a long run that samples windows all over a large corpus would see its RSS
    climb toward the corpus size, though those pages are only page cache. Every ``RELEASE_EVERY``
    slices the maps' pages are therefore unmapped from this process (``MADV_DONTNEED``: the page cache
    keeps them, a later touch is a minor fault), which bounds the mapped part of RSS by a few MB.
    """

    RELEASE_EVERY = 64

    def __init__(self, maps: list[np.ndarray]) -> None:
        self._maps = maps
        self._ends = np.cumsum([len(m) for m in maps], dtype=np.int64)
        self.dtype = maps[0].dtype if maps else np.dtype(np.uint16)
        self._reads = 0
        self._touched: set[int] = set()

    def release(self) -> None:
        """Unmaps the pages touched so far from this process (the data stays valid and readable)."""
        for i in self._touched:
            raw = getattr(self._maps[i], "_mmap", None)
            if raw is not None and hasattr(raw, "madvise"):
                raw.madvise(mmap.MADV_DONTNEED)
        self._touched.clear()

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("shard tokens are read by slices, tokens[a:b]")
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise TypeError("shard tokens are read by contiguous slices, tokens[a:b]")
        if stop <= start:
            return np.zeros(0, dtype=self.dtype)
        self._reads += 1
        if self._reads % self.RELEASE_EVERY == 0:
            self.release()
        pieces = self._pieces(start, stop)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _pieces(self, start: int, stop: int) -> list[np.ndarray]:
        i = int(np.searchsorted(self._ends, start, side="right"))
        pieces = []
        while start < stop:
            base = int(self._ends[i - 1]) if i else 0
            end = min(stop, int(self._ends[i]))
            pieces.append(self._maps[i][start - base : end - base])
            self._touched.add(i)
            start, i = end, i + 1
        return pieces


@dataclass(frozen=True)
class ShardSet:
    """An opened shard set: the manifest, both splits as memory-mapped sequences, and where it lives."""

    path: Path
    manifest: dict[str, Any]
    train: ShardedTokens
    val: ShardedTokens
    #: The data roots its files are opened under: None = this process's; a staged copy of a remote set
    #: (whose URI was checked against the roots) is held to its own cache folder.
    roots: tuple[str, ...] | None = None

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def content_hash(self) -> str:
        return str(self.manifest["content_hash"])

    @property
    def tokenizer_spec(self) -> str:
        return str(self.manifest["tokenizer"]["spec"])

    def tokenizer(self) -> Any:
        """The tokenizer that made the ids (None for synthetic sets), loaded from the set's own file."""
        from trainables.data.tokenizer import parse_tokenizer_spec, tokenizer_from_bytes

        spec = self.tokenizer_spec
        try:
            parse_tokenizer_spec(spec)
        except ValueError:
            return None
        name = self.manifest["tokenizer"]["file"]
        with _open_member(self.path, name, self.roots, max_bytes=MAX_WHOLE_READ_BYTES) as fh:
            blob = fh.read()  # from the descriptor that was checked, never reopened by name
        return tokenizer_from_bytes(spec, blob, where=str(self.path / name))


def _member_path(root: Path, name: object) -> Path:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ShardError(f"shard set {root}: manifest names {name!r}, not a plain file name inside the set")
    return root / name


def _open_member(root: Path, name: object, roots: Iterable[str] | None = None,
                 *, max_bytes: int | None = None) -> BinaryIO:
    """The one place a shard set's files are opened for reading (manifest, tokenizer, shards): through the
    data roots (a member linked out of them is refused, not read), regular files only."""
    path = _member_path(root, name)
    if not path.exists() and not path.is_symlink():
        raise ShardError(f"shard set {root}: {path.name} is missing; prepare the set again")
    try:
        return open_data_file(path, roots, max_bytes=max_bytes)  # the caller closes it
    except DataFileError as exc:
        raise ShardError(f"shard set {root}: {path.name}: {str(exc).removeprefix(f'data file {path} ')}") from None


def read_manifest(root: Path, roots: Iterable[str] | None = None) -> dict[str, Any]:
    """The manifest of the shard set at ``root`` (a folder), read through the data roots; ``ShardError``
    when it is not a lossweep shard manifest of this format version."""
    with _open_member(root, MANIFEST, roots, max_bytes=MAX_WHOLE_READ_BYTES) as fh:
        return _valid_manifest(fh.read(), root)


def read_set_manifest(spec: str, roots: Iterable[str] | None = None) -> dict[str, Any]:
    """The manifest of ``shards:DIR`` (through the data roots) or of ``shards:s3://…`` (read remotely,
    nothing staged: what the service sizes a sweep from)."""
    uri = remote_uri(spec)
    if uri is None:
        return read_manifest(shard_set_folder(spec), roots)
    from trainables.data.shard_cache import ShardCacheError, remote_manifest

    try:
        return _valid_manifest(remote_manifest(uri, MANIFEST), uri)
    except ShardCacheError as exc:
        raise ShardError(str(exc)) from None


def _valid_manifest(raw: bytes, root: object) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise ShardError(f"shard set {root}: {MANIFEST} is not JSON; prepare the set again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ShardError(f"shard set {root}: {MANIFEST} is not a lossweep shard manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ShardError(
            f"shard set {root}: format version {manifest.get('version')!r}, this lossweep reads {FORMAT_VERSION}; "
            "prepare the set again"
        )
    return manifest


def shard_set_folder(spec_or_path: str | os.PathLike[str]) -> Path:
    """The local folder of ``shards:DIR`` (or ``DIR``), resolved; ``ShardError`` for a URI or a non-folder."""
    text = str(spec_or_path)
    path_str = text[len(SCHEME) :] if text.startswith(SCHEME) else text
    if not path_str:
        raise ShardError(f"corpus {text!r} names no folder; write it as shards:/path/to/prepared")
    if is_uri(path_str):
        raise ShardError(f"corpus {text!r} is on object storage; a trial stages it (open_shards), not a folder")
    root = local_path(path_str).resolve()
    if not root.is_dir():
        raise ShardError(f"corpus {text!r}: {root} is not a folder; prepare one with `lossweep data prepare`")
    return root


def is_shards_spec(spec: str) -> bool:
    return spec.startswith(SCHEME)


def remote_uri(spec_or_path: str | os.PathLike[str]) -> str | None:
    """The object-store URI of ``shards:s3://…`` (any pyarrow filesystem URI); None for a local set."""
    text = str(spec_or_path)
    path_str = text[len(SCHEME) :] if text.startswith(SCHEME) else text
    return path_str if is_uri(path_str) else None


def open_shards(spec_or_path: str | os.PathLike[str], *, cache_dir: Path | None = None) -> ShardSet:
    """Opens a shard set (``shards:DIR`` or ``DIR``, or a URI such as ``shards:s3://bucket/set``, staged
    into the node's shard cache first: :mod:`trainables.data.shard_cache`) in O(number of shards): reads
    the manifest, checks that every file it names has the size it states, and maps the shards.
    Raises ``ShardError``."""
    uri = remote_uri(spec_or_path)
    roots: tuple[str, ...] | None = None
    if uri is not None:
        from trainables.data.shard_cache import ShardCacheError, shard_cache_dir, stage

        try:
            root = stage(uri, shard_cache_dir(cache_dir), manifest_name=MANIFEST, member_name=_member_path)
        except ShardCacheError as exc:
            raise ShardError(str(exc)) from None
        roots = (str(root),)
    else:
        root = shard_set_folder(spec_or_path)
    manifest = read_manifest(root, roots)
    dtype = DTYPES.get(str(manifest.get("dtype")))
    if dtype is None:
        raise ShardError(f"shard set {root}: unknown dtype {manifest.get('dtype')!r} in {MANIFEST}")
    np_dtype = np.dtype(dtype).newbyteorder("<")
    splits = {}
    for split in SPLITS:
        info = (manifest.get("splits") or {}).get(split)
        if not isinstance(info, dict) or not info.get("shards"):
            raise ShardError(f"shard set {root}: {MANIFEST} lists no {split} shards")
        maps: list[np.ndarray] = []
        for shard in info["shards"]:
            with _open_member(root, shard.get("file"), roots) as fh:
                size = os.fstat(fh.fileno()).st_size
                want = int(shard.get("tokens", -1)) * np_dtype.itemsize
                if size != want or want <= 0:
                    raise ShardError(
                        f"shard set {root}: {shard['file']} holds {size:,} bytes but {MANIFEST} says "
                        f"{shard.get('tokens')} tokens ({want:,} bytes); the files do not match their manifest, "
                        "prepare the set again"
                    )
                maps.append(np.memmap(fh, dtype=np_dtype, mode="r"))
        tokens = ShardedTokens(maps)
        if len(tokens) != info.get("tokens"):
            raise ShardError(
                f"shard set {root}: the {split} shards hold {len(tokens):,} tokens but {MANIFEST} says "
                f"{info.get('tokens')}; prepare the set again"
            )
        splits[split] = tokens
    return ShardSet(path=root, manifest=manifest, train=splits["train"], val=splits["val"], roots=roots)


def verify(spec_or_path: str | os.PathLike[str]) -> ShardSet:
    """``open_shards`` plus a re-hash of every file against the manifest (reads the whole set)."""
    shards = open_shards(spec_or_path)
    m = shards.manifest
    checks = [(m["tokenizer"]["file"], m["tokenizer"]["sha256"])]
    checks += [(s["file"], s["sha256"]) for split in SPLITS for s in m["splits"][split]["shards"]]
    for name, want in checks:
        h = hashlib.sha256()
        with _open_member(shards.path, name, shards.roots) as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 24), b""):
                h.update(block)
        if h.hexdigest() != want:
            raise ShardError(f"shard set {shards.path}: {name} does not match the hash in {MANIFEST}; prepare it again")
    expect = content_hash(m["dtype"], m["vocab_size"], m["tokenizer"]["sha256"], m["splits"])
    if expect != m["content_hash"]:
        raise ShardError(f"shard set {shards.path}: content_hash in {MANIFEST} does not match its shards")
    return shards
