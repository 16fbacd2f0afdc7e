"""A node-local copy of a shard set kept on object storage (``shards:s3://bucket/prefix``).

Memory maps need local files, so a trial that names a remote set reads it through a cache on its node:

- **one download per node and set**: the set's ``content_hash`` names its folder, and a file lock makes
  concurrent trials on the node wait for one copy instead of each fetching the set;
- **checked**: every file is hashed while it is copied and must match the sha256 its manifest states before
  it counts as present; the manifest is written last and marks a complete copy;
- **resumable**: files already copied are kept across an interrupted copy (listed in ``.complete``), and a
  half-copied file continues from its last byte;
- **bounded**: the cache holds at most ``LOSSWEEP_SHARD_CACHE_BYTES`` (default 64 GiB); the least recently
  used complete sets are removed first. Removing a set that a running trial has mapped is safe on POSIX
  (its maps keep the data until they close); a set being copied is never removed.

The cache folder is ``LOSSWEEP_SHARD_CACHE`` if set, else ``shards/`` under the run's token cache.
A confined run (``LOSSWEEP_DATA_ROOTS``) may stage only a URI under one of its URI roots.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from trainables.data.cache import default_cache_root
from trainables.data.roots import DataRootError, uri_inside_roots, uri_roots

CACHE_ENV = "LOSSWEEP_SHARD_CACHE"
LIMIT_ENV = "LOSSWEEP_SHARD_CACHE_BYTES"
DEFAULT_LIMIT = 64 << 30
COMPLETE = ".complete"
LAST_USED = ".last_used"
_MANIFEST_MAX_BYTES = 64 << 20  # a manifest lists files; anything larger is not one
_CHUNK = 8 << 20
_HASH = re.compile(r"^[0-9a-f]{8,128}$")


class ShardCacheError(OSError):
    """A remote shard set that cannot be staged; the message names the set, the file and the fix."""


def shard_cache_dir(token_cache: Path | None = None) -> Path:
    """``LOSSWEEP_SHARD_CACHE``, else ``shards/`` under the run's token cache (or the node's default)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return (token_cache or default_cache_root()) / "shards"


def cache_limit() -> int:
    value = os.environ.get(LIMIT_ENV)
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise ShardCacheError(f"{LIMIT_ENV}={value!r} is not a whole number of bytes") from None
    if limit <= 0:
        raise ShardCacheError(f"{LIMIT_ENV} must be > 0, got {limit}")
    return limit


def check_uri(uri: str) -> None:
    """Refuses a URI outside the URI data roots of a confined run (``LOSSWEEP_DATA_ROOTS``)."""
    roots = uri_roots()
    if roots is not None and not uri_inside_roots(uri, roots):
        raise DataRootError(f"shard set {uri} is outside the allowed data roots ({', '.join(roots) or 'none'})")


def stage(uri: str, cache_dir: Path, *, manifest_name: str, member_name: Callable[[Path, object], Path]) -> Path:
    """The local folder holding a verified copy of the shard set at ``uri``, copied first if needed.

    The shard format (:mod:`trainables.data.shards`) names its manifest (``manifest_name``) and says which
    file names a manifest may list (``member_name(root, name)`` raises on any other)."""
    MANIFEST = manifest_name
    check_uri(uri)
    fs, root = _filesystem(uri)
    raw = _read_small(fs, f"{root}/{MANIFEST}", uri)
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise ShardCacheError(f"shard set {uri}: {MANIFEST} is not JSON; prepare the set again") from None
    key = str(manifest.get("content_hash", "")) if isinstance(manifest, dict) else ""
    if not _HASH.match(key):
        raise ShardCacheError(f"shard set {uri}: {MANIFEST} carries no content_hash; prepare the set again")
    members = _members(manifest, uri)
    for name, _ in members:
        member_name(Path(uri), name)
    sizes = _remote_sizes(fs, root, [n for n, _ in members], uri)
    cache_dir.mkdir(parents=True, exist_ok=True)
    local = cache_dir / key
    with _locked(cache_dir / f".{key}.lock"):
        if not (local / MANIFEST).is_file():
            with _locked(cache_dir / ".cache.lock"):
                _make_room(cache_dir, sum(sizes.values()) + len(raw) - _bytes(local), keep=key, manifest_name=MANIFEST)
                local.mkdir(exist_ok=True)
            done = _complete(local)
            for name, sha in members:
                if name not in done:
                    _fetch(fs, f"{root}/{name}", local / name, sha, sizes[name], uri)
                    with open(local / COMPLETE, "a") as fh:
                        fh.write(name + "\n")
            tmp = local / f"{MANIFEST}.partial"
            tmp.write_bytes(raw)
            os.replace(tmp, local / MANIFEST)
        (local / LAST_USED).touch()
    return local


def remote_manifest(uri: str, manifest_name: str) -> bytes:
    """The manifest of the set at ``uri``, read without staging anything (bounded in size)."""
    fs, root = _filesystem(uri)
    return _read_small(fs, f"{root}/{manifest_name}", uri)


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise ShardCacheError(f"shard set {uri}: cannot reach it ({exc})") from None
    return fs, root.rstrip("/")


def _members(manifest: dict[str, Any], uri: str) -> list[tuple[str, str]]:
    try:
        out = [(manifest["tokenizer"]["file"], manifest["tokenizer"]["sha256"])]
        for info in manifest["splits"].values():
            out += [(s["file"], s["sha256"]) for s in info["shards"]]
    except (KeyError, TypeError, AttributeError):
        raise ShardCacheError(f"shard set {uri}: its manifest lists no files with hashes; prepare it again") from None
    return [(str(n), str(h)) for n, h in out]


def _read_small(fs: pafs.FileSystem, path: str, uri: str) -> bytes:
    try:
        with fs.open_input_stream(path) as fh:
            data = fh.read(_MANIFEST_MAX_BYTES + 1)
    except FileNotFoundError:
        raise ShardCacheError(f"shard set {uri}: no manifest.json; prepare it with `lossweep data prepare`") from None
    except OSError as exc:
        raise ShardCacheError(f"shard set {uri}: cannot read its manifest ({exc})") from None
    if len(data) > _MANIFEST_MAX_BYTES:
        raise ShardCacheError(f"shard set {uri}: its manifest is larger than {_MANIFEST_MAX_BYTES:,} bytes")
    return bytes(data)


def _remote_sizes(fs: pafs.FileSystem, root: str, names: list[str], uri: str) -> dict[str, int]:
    infos = fs.get_file_info([f"{root}/{n}" for n in names])
    out = {}
    for name, info in zip(names, infos, strict=True):
        if info.type != pafs.FileType.File:
            raise ShardCacheError(f"shard set {uri}: {name} is missing; prepare the set again")
        out[name] = int(info.size)
    return out


def _fetch(fs: pafs.FileSystem, src: str, dst: Path, sha256: str, size: int, uri: str) -> None:
    """Copies one file, continuing a partial copy, and checks its hash before it takes its name."""
    partial = dst.with_name(dst.name + ".partial")
    digest = hashlib.sha256()
    offset = 0
    if partial.is_file() and partial.stat().st_size <= size:
        with open(partial, "rb") as fh:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(block)
                offset += len(block)
    else:
        partial.unlink(missing_ok=True)
    with fs.open_input_file(src) as remote, open(partial, "ab") as out:
        remote.seek(offset)
        while offset < size:
            block = remote.read(min(_CHUNK, size - offset))
            if not block:
                break
            out.write(block)
            digest.update(block)
            offset += len(block)
    if offset != size or digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise ShardCacheError(
            f"shard set {uri}: {dst.name} does not match the hash in its manifest; prepare the set again"
        )
    os.replace(partial, dst)


def _complete(local: Path) -> set[str]:
    try:
        names = (local / COMPLETE).read_text().split("\n")
    except FileNotFoundError:
        return set()
    return {n for n in names if n and (local / n).is_file()}


def _bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _make_room(cache_dir: Path, need: int, *, keep: str, manifest_name: str) -> None:
    """Removes least recently used complete sets (none being copied) until ``need`` more bytes fit."""
    limit = cache_limit()
    sets = [p for p in cache_dir.iterdir() if p.is_dir() and _HASH.match(p.name)]
    used = sum(_bytes(p) for p in sets)
    if need > limit:
        raise ShardCacheError(
            f"the shard set needs {need:,} bytes, more than the shard cache may hold ({limit:,}); raise {LIMIT_ENV}"
        )
    victims = sorted(
        (p for p in sets if p.name != keep and (p / manifest_name).is_file()),
        key=lambda p: (p / LAST_USED).stat().st_mtime if (p / LAST_USED).exists() else 0.0,
    )
    for victim in victims:
        if used + need <= limit:
            break
        with _locked(cache_dir / f".{victim.name}.lock", wait=False) as got:
            if got:
                size = _bytes(victim)
                shutil.rmtree(victim, ignore_errors=True)
                used -= size
    if used + need > limit:
        raise ShardCacheError(
            f"the shard cache {cache_dir} cannot free {need:,} bytes: {used:,} of {limit:,} are sets being "
            f"copied; raise {LIMIT_ENV} or wait"
        )


@contextmanager
def _locked(path: Path, *, wait: bool = True) -> Iterator[bool]:
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
