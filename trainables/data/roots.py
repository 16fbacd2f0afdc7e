"""Where a training run may read its data from. A service that runs other people's sweeps confines their
``text:``/``parquet:`` corpora to its data roots (``LOSSWEEP_DATA_ROOTS``, which it passes to every job),
and the check is made where each file is opened, on the file's real path: a symlink inside a root that
points outside it, or a file swapped for such a link after the sweep was accepted, is refused. Without
``LOSSWEEP_DATA_ROOTS`` (a user's own runs) any path may be read.

Every loader calls :func:`checked_path` on every file it opens and opens the path it returns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

ENV = "LOSSWEEP_DATA_ROOTS"


class DataRootError(PermissionError):
    """A data file outside the allowed data roots; the message names the file and the roots."""


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


def checked_path(path: str | os.PathLike[str]) -> Path:
    """``path`` resolved to its real location, refused with :class:`DataRootError` when this process is
    confined to data roots and the file is outside all of them. Open the returned path, not ``path``."""
    real = Path(os.path.realpath(os.path.expanduser(os.fspath(path))))
    roots = allowed_roots()
    if roots is not None and not inside_roots(real, roots):
        where = ", ".join(map(str, roots)) or "none"
        raise DataRootError(f"data file {path} resolves to {real}, outside the allowed data roots ({where})")
    return real


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
