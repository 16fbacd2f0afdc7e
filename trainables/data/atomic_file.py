"""Writing a local file so that a reader never sees half of it: a temporary file beside the target,
then a rename over it. Every part of lossweep that writes sweep files, manifests or caches uses it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _create_temporary(directory: Path, name: str) -> tuple[int, Path]:
    # Created with mode 0666 so the kernel applies the process umask, as for any file the user writes
    # (mkstemp's 0600 would hide reports from a colleague sharing the sweep dir). Reading the umask
    # with os.umask would change it for every thread of a server for a moment.
    for _ in range(100):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {directory / name}")


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` (parents created) atomically; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(target.parent, target.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
