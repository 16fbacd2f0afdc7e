"""API tokens. A token is 32 random bytes (URL-safe base64, prefixed ``lsw_``); only its SHA-256 is
stored, so a leaked database does not leak tokens. High-entropy random tokens need no slow KDF: a
single hash is enough to make the stored value useless to an attacker."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import ApiToken

TOKEN_PREFIX = "lsw_"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as."""

    name: str
    is_admin: bool
    token_id: int | None = None  # None for anonymous reads under public_read


ANONYMOUS = Principal(name="anonymous", is_admin=False)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def validate_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or any(c.isspace() for c in name) or not name.isprintable():
        raise ValueError("a token name is 1-200 printable characters without spaces")
    return name


def create_token(session: Session, name: str, *, admin: bool = False) -> tuple[ApiToken, str]:
    """Stores a new token for user ``name``; returns the row and the token, which is never shown again."""
    token = new_token()
    row = ApiToken(name=validate_name(name), token_hash=hash_token(token), prefix=token[:10], is_admin=admin)
    session.add(row)
    session.flush()
    return row, token


def authenticate(session: Session, token: str) -> Principal | None:
    """The principal of a presented token, or None when unknown or revoked."""
    digest = hash_token(token)
    # Plain columns, not an ORM object: this runs on every request.
    row = session.execute(
        select(ApiToken.id, ApiToken.name, ApiToken.is_admin, ApiToken.revoked, ApiToken.token_hash).where(
            ApiToken.token_hash == digest
        )
    ).first()
    if row is None or row.revoked or not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(name=row.name, is_admin=row.is_admin, token_id=row.id)


def revoke_tokens(session: Session, *, token_id: int | None = None, name: str | None = None) -> int:
    """Revokes one token by id or every token of a user; returns how many were revoked."""
    query = select(ApiToken).where(ApiToken.revoked.is_(False))
    if token_id is not None:
        query = query.where(ApiToken.id == token_id)
    if name is not None:
        query = query.where(ApiToken.name == name)
    rows = list(session.scalars(query))
    for row in rows:
        row.revoked = True
    return len(rows)
