"""``/v1/sweeps``: submit, list, get and cancel sweeps."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.deps import BaseUrlDep, CredentialsDep, ReaderDep, SessionDep, StateDep, UserDep, reader
from service.models import SweepStatus
from service.queue import schedule
from service.ray_client import RayUnavailable
from service.routes.openapi import ERRORS, SUBMIT_BODY
from service.schemas import SweepDetail, SweepList
from service.sweeps import create_sweep, find_sweeps, get_sweep, may_cancel, request_cancel, sweep_public

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])


@router.post(
    "",
    status_code=201,
    response_model=SweepDetail,
    summary="Submit a sweep",
    description="Body: a SweepSpec, or `{\"preset\": NAME, \"overrides\": {...}}`. The sweep runs as a Ray job; "
    "when its owner already has the maximum number of sweeps running it waits QUEUED and starts in order. "
    "With an `Idempotency-Key` header, repeating the request with the same body returns the same sweep "
    "(header `Idempotent-Replayed: true`) and starts no second job; the same key with another body is a 409.",
    responses={**ERRORS, 409: ERRORS[409], 413: ERRORS[413], 429: ERRORS[429]},
    openapi_extra={"requestBody": SUBMIT_BODY},
)
def submit_sweep(
    state: StateDep,
    session: SessionDep,
    principal: UserDep,
    base: BaseUrlDep,
    response: Response,
    body: Annotated[Any, Body()],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> SweepDetail:
    nodes = state.ray.nodes_cached() if state.settings.check_cluster_fit else None  # before the lock: it may wait
    with state.write_lock:
        sweep, replayed = create_sweep(session, state.settings, principal, body, idempotency_key, nodes)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    elif sweep.queue_position is None:  # when the owner is at the limit, nothing can start
        schedule(state, owner=principal.name)  # not under write_lock: it may wait on Ray
        session.expire_all()  # pick up the submission made by the scheduler's own session
    sweep = get_sweep(session, sweep.id)
    response.headers["Location"] = f"{base}/v1/sweeps/{sweep.id}"
    return sweep_public(sweep, state.settings, base, detail=True, show_paths=principal.is_admin)  # type: ignore[return-value]


@router.get(
    "",
    response_model=SweepList,
    summary="List sweeps",
    description="A user's own sweeps; an admin's, everyone's (and everyone's for all under LOSSWEEP_PUBLIC_READ).",
    responses=ERRORS,
)
def list_sweeps(
    state: StateDep,
    session: SessionDep,
    principal: ReaderDep,
    base: BaseUrlDep,
    status: Annotated[list[SweepStatus] | None, Query(description="Only sweeps in these statuses.")] = None,
    owner: Annotated[
        str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$", description="Only this user's sweeps.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> SweepList:
    rows, total = find_sweeps(
        session, principal, state.settings, statuses=[s.value for s in status or ()], owner=owner, limit=limit,
        offset=offset,
    )
    return SweepList(
        items=[sweep_public(s, state.settings, base, show_paths=principal.is_admin) for s in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{sweep_id}", response_model=SweepDetail, summary="Get a sweep", responses=ERRORS)
async def read_sweep(sweep_id: str, state: StateDep, credentials: CredentialsDep, base: BaseUrlDep) -> Response:
    # The hot path (clients poll it): authentication, the read and the serialisation in one thread hop.
    def _read() -> bytes:
        with state.sessions() as session:
            principal = reader(session, credentials, state.settings)
            sweep = get_sweep(session, sweep_id, principal, state.settings)
            public = sweep_public(sweep, state.settings, base, detail=True, show_paths=principal.is_admin)
            public.can_cancel = may_cancel(sweep, principal) and not sweep.status_enum.is_final  # type: ignore[attr-defined]
            return public.model_dump_json().encode()

    return Response(await run_in_threadpool(_read), media_type="application/json")


@router.post(
    "/{sweep_id}/cancel",
    status_code=202,
    response_model=SweepDetail,
    summary="Cancel a sweep",
    description="Stops the sweep's Ray job and its trials. The sweep ends CANCELLED (shortly, once Ray has "
    "stopped the job) and keeps its results so far, which stay reportable. Owners cancel their own sweeps; "
    "admins any.",
    responses={**ERRORS, 409: ERRORS[409]},
)
async def cancel_sweep(
    sweep_id: str, request: Request, state: StateDep, principal: UserDep, base: BaseUrlDep
) -> SweepDetail:
    def _cancel() -> SweepDetail:
        with state.sessions() as session:
            sweep = get_sweep(session, sweep_id, principal, state.settings)
            request_cancel(session, sweep, principal)
            if sweep.ray_submission_id is not None:
                try:
                    state.ray.stop(sweep.ray_submission_id)
                except RayUnavailable as exc:
                    sweep.message = f"cancel requested; Ray unreachable, will retry: {exc}"
                    session.commit()
            return sweep_public(sweep, state.settings, base, detail=True,  # type: ignore[return-value]
                                show_paths=principal.is_admin)

    result = await run_in_threadpool(_cancel)
    monitor = getattr(request.app.state, "monitor", None)
    if monitor is not None:
        monitor.wake()
    return result
