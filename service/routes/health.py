"""Liveness (``/healthz``) and readiness (``/readyz``: database and Ray reachable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.auth import authenticate
from service.db import ping
from service.deps import CredentialsDep, StateDep
from service.schemas import Health, Readiness
from service.version import service_version

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The service is up")
def healthz() -> Health:
    return Health(status="ok", version=service_version())


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and Ray are reachable",
    description="Says `ok` or `unreachable` for each; an admin's token also gets the addresses and errors.",
    responses={503: {"model": Readiness, "description": "Says which of database and Ray is unreachable."}},
)
async def readyz(state: StateDep, credentials: CredentialsDep) -> JSONResponse:
    def _db() -> str:
        try:
            ping(state.engine)
            return "ok"
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]

    def _ray() -> str:
        try:
            return f"ok (Ray {state.ray.ping()} at {state.ray.address})"
        except Exception as exc:
            return f"unreachable: {exc}"[:300]

    def _is_admin() -> bool:
        if credentials is None or not credentials.credentials:
            return False
        try:
            with state.sessions() as session:
                principal = authenticate(session, credentials.credentials)
        except Exception:  # the database is down: no one is known to be an admin
            return False
        return principal is not None and principal.is_admin

    db, ray, admin = await run_in_threadpool(_db), await run_in_threadpool(_ray), await run_in_threadpool(_is_admin)
    ok = db == "ok" and ray.startswith("ok")
    if not admin:  # addresses and error texts are for operators only
        db, ray = (("ok" if part.startswith("ok") else "unreachable") for part in (db, ray))
    body = Readiness(status="ready" if ok else "unavailable", database=db, ray=ray)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
