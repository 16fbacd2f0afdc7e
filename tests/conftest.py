"""Shared test fixtures. Fixture groups live in tests/fixtures/ and are loaded as plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.ray_cluster",
    "tests.fixtures.sweeps",
    "tests.fixtures.service",
    "tests.fixtures.loss_plugin",
    "tests.fixtures.browser",
    "tests.fixtures.trackers",
]

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The `shared` folder beside the checkout (real corpora for tests); tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (test corpora) is not present")
    return SHARED


@pytest.fixture(scope="session")
def shakespeare_path(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return path
