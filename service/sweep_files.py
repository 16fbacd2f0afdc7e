"""The service's few touches of a sweep directory: writing the submitted spec before the driver starts,
reading progress, and recording the end of a sweep whose driver was stopped before it could.

Sweep dirs are local paths or pyarrow filesystem URIs (``s3://...``); both are handled here so the rest
of the service only sees strings. Reading results (trials, metrics) goes through ``search_spaces.results``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from trainables.atomic_file import write_atomic

SPEC_FILE = "spec.yaml"
PROGRESS_FILE = "progress.json"


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if is_uri(root) else str(Path(root, *parts))


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def write_bytes(path: str, data: bytes) -> None:
    """Writes atomically: a reader never sees half a file."""
    if is_uri(path):
        from pyarrow import fs as pafs

        filesystem, inner = pafs.FileSystem.from_uri(path)
        parent = inner.rsplit("/", 1)[0]
        filesystem.create_dir(parent, recursive=True)
        with filesystem.open_output_stream(inner) as out:  # object stores replace objects atomically
            out.write(data)
        return
    write_atomic(_local(path), data)


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        if is_uri(path):
            from pyarrow import fs as pafs

            filesystem, inner = pafs.FileSystem.from_uri(path)
            with filesystem.open_input_stream(inner) as src:
                return bytes(src.read())
        return Path(_local(path)).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
            return None
        raise


def write_spec(sweep_dir: str, spec: dict[str, Any]) -> str:
    path = join(sweep_dir, SPEC_FILE)
    write_bytes(path, yaml.safe_dump(spec, sort_keys=False).encode())
    return path


def read_progress(sweep_dir: str) -> dict[str, Any] | None:
    """progress.json, or None when the driver has not written it yet (or it is unreadable)."""
    raw = read_bytes(join(sweep_dir, PROGRESS_FILE))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def mark_ended(sweep_dir: str, status: str) -> None:
    """Records a final status in progress.json when the driver was stopped (cancel, crash) before it could
    write one, so reports rendered later say how the sweep ended instead of 'running'."""
    progress = read_progress(sweep_dir)
    if progress is None or progress.get("status") in ("SUCCEEDED", "FAILED", "CANCELLED"):
        return
    progress["status"] = status
    progress["eta_s"] = None
    progress["updated_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_bytes(join(sweep_dir, PROGRESS_FILE), json.dumps(progress, indent=2).encode())
