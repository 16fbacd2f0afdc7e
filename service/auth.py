"""API tokens. A token is 32 random bytes (URL-safe base64, prefixed ``lsw_``); only its SHA-256 is
stored, so a leaked database does not leak tokens. High-entropy random tokens need no slow KDF: a
single hash is enough to make the stored value useless to an attacker."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    expires_at: datetime | None = None


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


_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``90m`` / ``12h`` / ``30d`` from ``now``, or an ISO time with its zone; ValueError otherwise."""
    text = text.strip()
    now = now or datetime.now(UTC)
    if text[:-1].isdigit() and text[-1:] in _UNITS:
        if int(text[:-1]) <= 0:
            raise ValueError(f"{text!r}: give a positive duration")
        return now + timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (90m, 12h, 30d) nor a time (2027-01-31T00:00Z)") from None
    if when.tzinfo is None:
        raise ValueError(f"{text!r}: give the time zone (e.g. 2027-01-31T00:00Z)")
    if when <= now:
        raise ValueError(f"{text!r} is in the past")
    return when.astimezone(UTC)


def create_token(session: Session, name: str, *, admin: bool = False,
                 expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Stores a new token for user ``name``, refused from ``expires_at`` on (None: never); returns the row
    and the token, which is never shown again."""
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("give the expiry with a time zone (e.g. 2027-01-01T00:00Z) or as a duration (30d)")
    token = new_token()
    row = ApiToken(name=validate_name(name), token_hash=hash_token(token), prefix=token[:10], is_admin=admin,
                   expires_at=expires_at)
    session.add(row)
    session.flush()
    return row, token


def authenticate(session: Session, token: str) -> Principal | None:
    """The principal of a presented token, or None when unknown, revoked or expired."""
    digest = hash_token(token)
    # Plain columns, not an ORM object: this runs on every request.
    row = session.execute(
        select(ApiToken.id, ApiToken.name, ApiToken.is_admin, ApiToken.revoked, ApiToken.token_hash,
               ApiToken.expires_at).where(ApiToken.token_hash == digest)
    ).first()
    if row is None or row.revoked or not hmac.compare_digest(row.token_hash, digest):
        return None
    expires_at = row.expires_at
    if expires_at is not None and expires_at.tzinfo is None:  # SQLite keeps them naive: they are UTC
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at is not None and datetime.now(UTC) >= expires_at:
        return None
    return Principal(name=row.name, is_admin=row.is_admin, token_id=row.id, expires_at=expires_at)


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
