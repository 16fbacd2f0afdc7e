"""deploy/seed_admin_token.py: the admin token from a Kubernetes Secret works against the service's
real token store, repeated runs change nothing, and rotating the Secret retires the old token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.auth import authenticate
from service.db import make_engine, make_sessionmaker
from tests.deploy.deploy_files import DEPLOY

SCRIPT = DEPLOY / "seed_admin_token.py"
TOKEN_A = "lsw_" + "a" * 40
TOKEN_B = "lsw_" + "b" * 40


def _seed(db_url: str, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSSWEEP_")}
    env["LOSSWEEP_DATABASE_URL"] = db_url
    env["PYTHONPATH"] = str(DEPLOY.parent)
    if token is not None:
        env["LOSSWEEP_ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120, cwd=DEPLOY
    )


def _who(db_url: str, token: str) -> tuple[str, bool] | None:
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as session:
            principal = authenticate(session, token)
    finally:
        engine.dispose()
    return None if principal is None else (principal.name, principal.is_admin)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'lossweep.db'}"


def test_seed_creates_then_leaves_alone_then_rotates(db_url: str) -> None:
    first = _seed(db_url, TOKEN_A)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    assert _who(db_url, TOKEN_A) == ("admin", True)

    again = _seed(db_url, TOKEN_A)
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr

    rotated = _seed(db_url, TOKEN_B)
    assert rotated.returncode == 0 and "created" in rotated.stdout
    assert _who(db_url, TOKEN_B) == ("admin", True)
    assert _who(db_url, TOKEN_A) is None, "the rotated-out token must stop working"

    back = _seed(db_url, TOKEN_A)
    assert back.returncode == 0 and "restored" in back.stdout
    assert _who(db_url, TOKEN_A) == ("admin", True) and _who(db_url, TOKEN_B) is None


def test_seed_refuses_weak_or_missing_tokens(db_url: str) -> None:
    weak = _seed(db_url, "short")
    assert weak.returncode == 2 and "LOSSWEEP_ADMIN_TOKEN" in weak.stderr and "32" in weak.stderr
    missing = _seed(db_url, None)
    assert missing.returncode == 2 and "not set" in missing.stderr


def test_seed_refuses_a_token_of_another_user(db_url: str) -> None:
    assert _seed(db_url, TOKEN_A, "--name", "alice").returncode == 0
    clash = _seed(db_url, TOKEN_A, "--name", "admin")
    assert clash.returncode == 2 and "alice" in clash.stderr
    assert _who(db_url, TOKEN_A) == ("alice", True)
