"""The service's version: the installed ``lossweep`` distribution's, read from its metadata (the service
does not import the command-line package for it)."""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata


@lru_cache
def service_version() -> str:
    try:
        return metadata.version("lossweep")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
