"""Make the service accept an admin API token that comes from a Kubernetes Secret.

``lossweep token create`` makes up a token and prints it once, which suits a person at a terminal
but not a Deployment whose token lives in a Secret. This script (the service pod's init container)
stores the SHA-256 of the token in ``$LOSSWEEP_ADMIN_TOKEN`` for user ``--name`` (admin), exactly as
``lossweep token create --admin`` would have, and revokes any other token of that user, so rotating
the Secret and restarting the pod retires the old token. Running it again with the same token
changes nothing. The database is the service's own (``LOSSWEEP_DATABASE_URL``).

    LOSSWEEP_ADMIN_TOKEN=... python deploy/seed_admin_token.py --name admin
"""

from __future__ import annotations

import argparse
import os
import sys

from sqlalchemy import select

from service.auth import hash_token, validate_name
from service.db import init_db, make_engine, make_sessionmaker, session_scope
from service.models import ApiToken
from service.settings import Settings

ENV_VAR = "LOSSWEEP_ADMIN_TOKEN"
MIN_TOKEN_CHARS = 32


def seed(database_url: str, name: str, token: str) -> str:
    """Stores ``token`` as ``name``'s admin token; returns what happened (``created``/``unchanged``)."""
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ValueError(
            f"{ENV_VAR}: a token needs at least {MIN_TOKEN_CHARS} characters without spaces "
            "(make one with: python -c 'import secrets; print(\"lsw_\" + secrets.token_urlsafe(32))')"
        )
    name = validate_name(name)
    digest = hash_token(token)
    engine = make_engine(database_url)
    try:
        init_db(engine)
        with session_scope(make_sessionmaker(engine)) as session:
            other = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest, ApiToken.name != name))
            if other is not None:
                raise ValueError(f"{ENV_VAR}: this token already belongs to user {other.name!r}; use a new one")
            rows = list(session.scalars(select(ApiToken).where(ApiToken.name == name)))
            outcome = "created"
            for row in rows:
                if row.token_hash == digest:
                    outcome = "unchanged" if (row.is_admin and not row.revoked) else "restored"
                    row.is_admin, row.revoked = True, False
                elif not row.revoked:
                    row.revoked = True  # the Secret is the one source of this user's token
            if outcome == "created":
                session.add(ApiToken(name=name, token_hash=digest, prefix=token[:10], is_admin=True))
    finally:
        engine.dispose()
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="admin", help="user the token acts as (default: admin)")
    args = parser.parse_args(argv)
    token = os.environ.get(ENV_VAR, "")
    if not token:
        print(f"seed_admin_token: {ENV_VAR} is not set; nothing to do", file=sys.stderr)
        return 2
    settings = Settings()
    try:
        outcome = seed(settings.resolved_database_url, args.name, token)
    except ValueError as exc:
        print(f"seed_admin_token: {exc}", file=sys.stderr)
        return 2
    print(f"seed_admin_token: admin token for {args.name!r} {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
