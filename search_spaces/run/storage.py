"""Sweep directories on a local path or any pyarrow filesystem URI (``s3://bucket/prefix``, ``gs://``…).

Every write replaces the whole file atomically: locally by writing a temporary file beside the target
and renaming it over the target (``os.replace``); on an object store a single PUT is atomic, so the
object is written in one stream. Readers therefore never see half a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trainables.data.atomic_file import write_atomic


def is_uri(path: str | os.PathLike[str]) -> bool:
    """True for a remote filesystem URI (``s3://``…); ``file://`` and plain paths are local."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def local_path(path: str | os.PathLike[str]) -> Path:
    text = str(path)
    return Path(text[len("file://") :] if text.startswith("file://") else text).expanduser()


def normalize(path: str | os.PathLike[str]) -> str:
    """A URI as given (without a trailing slash), or an absolute local path."""
    return str(path).rstrip("/") if is_uri(path) else str(local_path(path).resolve())


def join(root: str | os.PathLike[str], *parts: str) -> str:
    if is_uri(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(local_path(root).joinpath(*parts))


def basename(path: str | os.PathLike[str]) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def _filesystem(uri: str) -> tuple[Any, str]:
    from pyarrow import fs as pafs

    return pafs.FileSystem.from_uri(uri)


def makedirs(path: str | os.PathLike[str]) -> None:
    if is_uri(path):
        filesystem, inner = _filesystem(str(path))
        filesystem.create_dir(inner, recursive=True)
    else:
        local_path(path).mkdir(parents=True, exist_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replaces ``path`` with ``data`` atomically."""
    if is_uri(path):
        filesystem, inner = _filesystem(str(path))
        parent = inner.rsplit("/", 1)[0]
        if parent and parent != inner:
            filesystem.create_dir(parent, recursive=True)
        with filesystem.open_output_stream(inner) as out:
            out.write(data)
        return
    write_atomic(local_path(path), data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode())


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes; ``FileNotFoundError`` when it does not exist (locally or remotely)."""
    if not is_uri(path):
        return local_path(path).read_bytes()
    filesystem, inner = _filesystem(str(path))
    from pyarrow import fs as pafs

    if filesystem.get_file_info(inner).type == pafs.FileType.NotFound:
        raise FileNotFoundError(str(path))
    with filesystem.open_input_stream(inner) as src:
        return bytes(src.read())


def exists(path: str | os.PathLike[str]) -> bool:
    if not is_uri(path):
        return local_path(path).exists()
    from pyarrow import fs as pafs

    filesystem, inner = _filesystem(str(path))
    return bool(filesystem.get_file_info(inner).type != pafs.FileType.NotFound)
