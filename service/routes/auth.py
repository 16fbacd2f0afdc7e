"""``/v1/me``: who the presented token acts as (the token handling itself is ``service.auth``)."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import UserDep
from service.routes.openapi import ERRORS
from service.schemas import WhoAmI

router = APIRouter(tags=["auth"])


@router.get("/v1/me", response_model=WhoAmI, summary="Who the token acts as", responses=ERRORS)
def whoami(principal: UserDep) -> WhoAmI:
    return WhoAmI(name=principal.name, is_admin=principal.is_admin, expires_at=principal.expires_at)
