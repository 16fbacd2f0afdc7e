"""The web pages: static files (HTML, JavaScript, CSS and vendored chart/YAML libraries) that the service
serves under ``/ui/`` and that talk to the public ``/v1`` API only. No build step: the files here are
what the browser runs."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
