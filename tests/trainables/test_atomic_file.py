"""trainables.data.atomic_file: whole files or nothing, with the permissions the user's umask gives."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trainables.data.atomic_file import write_atomic


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_file_mode_follows_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "sub" / "report.html", b"<html></html>")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"<html></html>"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = write_atomic(tmp_path / "progress.json", b"old")

    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.json"]
