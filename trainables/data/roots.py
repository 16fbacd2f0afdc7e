"""Where a training run may read its data from. A service that runs other people's sweeps confines every
file a sweep names -- ``text:``/``parquet:``/``shards:`` corpora, ``hf:`` tokenizer files, a shard set's
manifest and members -- to its data roots (``LOSSWEEP_DATA_ROOTS``, which it passes to every job), and the
check is made where each file is opened, on the file's real path: a symlink inside a root that points
outside it, or a file swapped for such a link after the sweep was accepted, is refused. Without
``LOSSWEEP_DATA_ROOTS`` (a user's own runs) any path may be read.

Every loader opens a data file through :func:`open_data_file` (or :func:`read_data_file` for a file read
whole): the roots check, then regular files only -- a FIFO would block the reader forever and a device
such as ``/dev/zero`` never ends -- and, for a file read whole, a size limit.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

ENV = "LOSSWEEP_DATA_ROOTS"
#: Largest file read whole into memory (a tokenizer.json, a shard manifest, one text document): a
#: GPT-2 tokenizer.json is 1.4 MB, so this only stops a file that is not what it claims to be.
MAX_WHOLE_READ_BYTES = 256 * 2**20


class DataRootError(PermissionError):
    """A data file outside the allowed data roots; the message names the file and the roots."""


class DataFileError(ValueError):
    """A data file that is not a regular file, or too large to read whole; the message names it."""


def parse_roots(value: str) -> list[str]:
    """A JSON list of paths, or paths separated by ``os.pathsep``."""
    if value.lstrip().startswith("["):
        return [str(p) for p in json.loads(value)]
    return [p for p in value.split(os.pathsep) if p]


def allowed_roots() -> list[Path] | None:
    """The local data roots this process is confined to, resolved; None when it is not confined."""
    value = os.environ.get(ENV)
    if value is None:
        return None
    return [Path(os.path.realpath(os.path.expanduser(r))) for r in parse_roots(value) if "://" not in r]


def uri_roots() -> list[str] | None:
    """The object-store roots (``s3://bucket/prefix``…) this process is confined to; None when it is not."""
    value = os.environ.get(ENV)
    if value is None:
        return None
    return [r for r in parse_roots(value) if "://" in r]


def uri_inside_roots(uri: str, roots: Iterable[str]) -> bool:
    """Whether an object-store URI lies under one of the URI ``roots``: a prefix match on whole path
    segments; a URI with ``.`` or ``..`` segments is never inside."""
    if "://" not in uri or any(seg in ("..", ".") for seg in uri.split("://", 1)[1].split("/")):
        return False
    uri = uri.rstrip("/")
    return any("://" in r and (uri == r.rstrip("/") or uri.startswith(r.rstrip("/") + "/")) for r in roots)


def inside_roots(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]]) -> bool:
    """Whether ``path``, with every symlink and ``..`` resolved, lies in one of ``roots`` (resolved too)."""
    text = os.fspath(path)
    if not text or "\x00" in text:
        return False
    try:
        real = Path(os.path.realpath(os.path.expanduser(text)))
    except (OSError, ValueError):
        return False
    for root in roots:
        if "://" in os.fspath(root):
            continue
        real_root = Path(os.path.realpath(os.path.expanduser(os.fspath(root))))
        if real == real_root or real_root in real.parents:
            return True
    return False


def checked_path(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]] | None = None) -> Path:
    """``path`` resolved to its real location, refused with :class:`DataRootError` when it is outside all of
    ``roots`` (default: this process's :func:`allowed_roots`; None there means unconfined). Open the
    returned path, not ``path``."""
    real = Path(os.path.realpath(os.path.expanduser(os.fspath(path))))
    confined = list(roots) if roots is not None else allowed_roots()
    if confined is not None and not inside_roots(real, confined):
        where = ", ".join(map(str, confined)) or "none"
        raise DataRootError(f"data file {path} is outside the allowed data roots ({where})")
    return real


def open_data_file(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]] | None = None,
                   *, max_bytes: int | None = None, anywhere: bool = False) -> BinaryIO:
    """The file at ``path`` opened for reading after :func:`checked_path` (skipped with ``anywhere``: the
    interpreter's own files), refused unless it is a regular file (and, with ``max_bytes``, no larger).
    Opened without blocking and checked on the open descriptor, so a FIFO cannot hang the caller and a
    file swapped after the check is judged as what was opened."""
    real = Path(os.path.realpath(os.path.expanduser(os.fspath(path)))) if anywhere else checked_path(path, roots)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataFileError(f"data file {path} does not exist") from None
    except OSError as exc:
        raise DataFileError(f"data file {path} cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DataFileError(f"data file {path} is not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise DataFileError(f"data file {path} holds {info.st_size:,} bytes, more than the {max_bytes:,} bytes "
                                "read whole")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_data_file(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]] | None = None,
                   *, max_bytes: int = MAX_WHOLE_READ_BYTES, anywhere: bool = False) -> bytes:
    """The bytes of a data file read whole, through :func:`open_data_file` with a size limit."""
    with open_data_file(path, roots, max_bytes=max_bytes, anywhere=anywhere) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew after the check
        raise DataFileError(f"data file {path} holds more than the {max_bytes:,} bytes read whole")
    return data


def escaping_files(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]],
                   limit: int = 100_000) -> Iterator[Path]:
    """Files under ``path`` (itself when a file) whose real location is outside ``roots``; looks at no
    more than ``limit`` files."""
    roots = list(roots)
    top = Path(os.path.expanduser(os.fspath(path)))
    if not top.is_dir():
        if not inside_roots(top, roots):
            yield top
        return
    seen = 0
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*filenames, *dirnames]:
            candidate = Path(dirpath, name)
            if (candidate.is_symlink() or name in filenames) and not inside_roots(candidate, roots):
                yield candidate
            seen += 1
            if seen >= limit:
                return
