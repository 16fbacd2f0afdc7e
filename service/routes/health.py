"""Liveness (``/healthz``), readiness (``/readyz``: database and Ray reachable) and ``/v1/me``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

import lossweep
from service.db import ping
from service.deps import StateDep, UserDep
from service.routes.openapi import ERRORS
from service.schemas import Health, Readiness, WhoAmI

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The service is up")
def healthz() -> Health:
    return Health(status="ok", version=lossweep.__version__)


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and Ray are reachable",
    responses={503: {"model": Readiness, "description": "Says which of database and Ray is unreachable."}},
)
async def readyz(state: StateDep) -> JSONResponse:
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

    db, ray = await run_in_threadpool(_db), await run_in_threadpool(_ray)
    ok = db == "ok" and ray.startswith("ok")
    body = Readiness(status="ready" if ok else "unavailable", database=db, ray=ray)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/v1/me", response_model=WhoAmI, summary="Who the token acts as", tags=["auth"], responses=ERRORS)
def whoami(principal: UserDep) -> WhoAmI:
    return WhoAmI(name=principal.name, is_admin=principal.is_admin)
