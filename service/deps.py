"""FastAPI dependencies: the service state, a DB session per request, and who is asking."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.auth import ANONYMOUS, Principal, authenticate
from service.errors import ApiError
from service.settings import Settings
from service.state import ServiceState

# Dependencies that only read memory are ``async``: FastAPI runs sync ones in its thread pool, a hop that
# costs more than their work. Those touching the database stay sync (they may block).
bearer = HTTPBearer(auto_error=False, description="An API token from `lossweep token create NAME`.")


async def get_state(request: Request) -> ServiceState:
    return request.app.state.lossweep  # type: ignore[no-any-return]


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_session(state: StateDep) -> Iterator[Session]:
    session = state.sessions()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _principal(session: Session, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "missing API token: send 'Authorization: Bearer <token>' (create one with "
                            "`lossweep token create NAME`)", loc=("header", "Authorization"), headers=_CHALLENGE)
    principal = authenticate(session, credentials.credentials)
    if principal is None:
        raise ApiError(401, "unknown, revoked or expired API token", loc=("header", "Authorization"),
                       headers=_CHALLENGE)
    return principal


def require_user(session: SessionDep, credentials: CredentialsDep) -> Principal:
    return _principal(session, credentials)


def reader(session: Session, credentials: HTTPAuthorizationCredentials | None, settings: Settings) -> Principal:
    """Reads need a token unless LOSSWEEP_PUBLIC_READ is on (a token presented is still checked)."""
    if settings.public_read and credentials is None:
        return ANONYMOUS
    return _principal(session, credentials)


def require_reader(session: SessionDep, credentials: CredentialsDep, settings: SettingsDep) -> Principal:
    return reader(session, credentials, settings)


async def require_admin(principal: Annotated[Principal, Depends(require_user)]) -> Principal:
    if not principal.is_admin:
        raise ApiError(403, f"{principal.name} is not an admin", loc=("header", "Authorization"))
    return principal


UserDep = Annotated[Principal, Depends(require_user)]
ReaderDep = Annotated[Principal, Depends(require_reader)]
AdminDep = Annotated[Principal, Depends(require_admin)]


async def base_url(request: Request, settings: SettingsDep) -> str:
    """Where links point: LOSSWEEP_PUBLIC_URL, else the request's base URL when its host is trusted,
    else nothing (relative links), so a forged Host header cannot send clients elsewhere."""
    if settings.public_url:
        return settings.public_url
    host = (request.url.hostname or "").lower().strip("[]")
    if host and host in {h.lower().strip("[]") for h in settings.trusted_hosts}:
        return str(request.base_url).rstrip("/")
    return ""


BaseUrlDep = Annotated[str, Depends(base_url)]
