"""Sweeps as the service manages them: creation (with idempotency keys and limits), their public view,
and cancellation. Scheduling onto Ray lives in ``service.queue``, status tracking in ``service.reconcile``."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from search_spaces.run.storage import join
from search_spaces.run.sweep_dir import TRIAL_STATUSES
from service.auth import ANONYMOUS, Principal
from service.caps import check_caps, check_cluster_fit
from service.errors import ApiError
from service.grafana import grafana_link
from service.models import IdempotencyKey, Sweep, SweepStatus
from service.schemas import BestSoFar, SweepDetail, SweepLinks, SweepPublic, TrackerState
from service.settings import Settings
from service.specs import admit_spec, count_trials, resolve_submission, storable

_SLUG = re.compile(r"[^a-z0-9]+")


def new_sweep_id(name: str) -> str:
    slug = _SLUG.sub("-", name.lower()).strip("-")[:40].strip("-") or "sweep"
    return f"{slug}-{secrets.token_hex(4)}"


def body_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _replay(session: Session, owner: str, key: str, digest: str) -> Sweep | None:
    row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.key == key))
    if row is None:
        return None
    if row.body_hash != digest:
        raise ApiError(
            409,
            f"Idempotency-Key {key!r} was already used with a different body (sweep {row.sweep_id})",
            loc=("header", "Idempotency-Key"),
        )
    sweep = session.get(Sweep, row.sweep_id)
    if sweep is None:  # the sweep was deleted: the key is free again
        session.delete(row)
        session.flush()
    return sweep


def lock_owner(session: Session, owner: str) -> None:
    """Serialises one user's submissions until the transaction ends, so the per-user counts and the insert
    are one atomic step, also across service processes: on PostgreSQL a transaction-scoped advisory lock
    on the user; on SQLite the database's write lock, taken before the counts (BEGIN IMMEDIATE)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"lossweep-owner:{owner}".encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif dialect == "sqlite":
        connection = session.connection()
        if not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sweep(
    session: Session,
    settings: Settings,
    principal: Principal,
    body: Any,
    idempotency_key: str | None,
    nodes: list[dict[str, float]] | None = None,
) -> tuple[Sweep, bool]:
    """Validates ``body`` and stores a QUEUED sweep; returns ``(sweep, replayed)``. ``replayed`` is True
    when an earlier request with the same Idempotency-Key and body already created it. ``nodes``: the Ray
    cluster's node resources, when known, to refuse a trial that fits on none of them."""
    digest = body_hash(body)
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 255 or not idempotency_key.isprintable():
            raise ApiError(422, "Idempotency-Key must be 1-255 printable characters", loc=("header", "Idempotency-Key"))
        existing = _replay(session, principal.name, idempotency_key, digest)
        if existing is not None:
            return existing, True

    spec, preset = resolve_submission(body, settings)
    num_trials = count_trials(spec, settings)
    spec_dict = storable(spec)
    admission = admit_spec(spec, settings)  # the data roots first: no file is read before its path passes
    fit_nodes = nodes if settings.check_cluster_fit else None
    check_caps(admission, settings, fit_nodes)
    if fit_nodes is not None:
        check_cluster_fit(spec, fit_nodes)

    lock_owner(session, principal.name)
    waiting = session.scalar(
        select(func.count())
        .select_from(Sweep)
        .where(Sweep.owner == principal.name, Sweep.status == SweepStatus.QUEUED.value,
               Sweep.ray_submission_id.is_(None))
    ) or 0
    if settings.max_queued_sweeps_per_user and waiting >= settings.max_queued_sweeps_per_user:
        raise ApiError(
            429,
            f"{principal.name} already has {waiting} sweeps waiting in the queue (limit "
            f"{settings.max_queued_sweeps_per_user}, LOSSWEEP_MAX_QUEUED_SWEEPS_PER_USER); retry when one starts",
            headers={"Retry-After": str(max(1, int(settings.poll_interval_s * 5)))},
        )

    from service.queue import active_count, waiting_message

    running = active_count(session, principal.name)
    limit = settings.max_concurrent_sweeps_per_user
    position = waiting + 1 if running >= limit else None
    message = waiting_message(principal.name, running, limit, position) if position is not None else "queued"
    name = "".join(c for c in str(getattr(spec, "name", None) or preset or "sweep") if c.isprintable()) or "sweep"
    sweep_id = new_sweep_id(name)
    sweep = Sweep(
        id=sweep_id,
        name=name[:200],
        owner=principal.name,
        preset=preset,
        status=SweepStatus.QUEUED.value,
        message=message,
        spec=spec_dict,
        num_trials=num_trials,
        sweep_dir=join(settings.resolved_storage_root, sweep_id),
        cancel_requested=False,
        queue_position=position,
    )
    session.add(sweep)
    try:
        session.flush()  # the sweep row first: the key references it
        if idempotency_key is not None:
            session.add(IdempotencyKey(owner=principal.name, key=idempotency_key, body_hash=digest, sweep_id=sweep_id))
        session.commit()
    except IntegrityError:
        # Another request with the same key won the race: answer as that request did.
        session.rollback()
        if idempotency_key is not None:
            existing = _replay(session, principal.name, idempotency_key, digest)
            if existing is not None:
                return existing, True
        raise
    return sweep, False


def can_read(principal: Principal, sweep: Sweep, settings: Settings) -> bool:
    """The visibility model: users read their own sweeps, admins everyone's, and LOSSWEEP_PUBLIC_READ
    opens reads of every sweep to everyone (anonymous callers included)."""
    return settings.public_read or principal.is_admin or sweep.owner == principal.name


def get_sweep(session: Session, sweep_id: str, principal: Principal | None = None,
              settings: Settings | None = None) -> Sweep:
    """The sweep, as ``principal`` may see it: a sweep they may not read is answered as one that does not
    exist (its id says nothing about it). Without a principal: internal use, no visibility check."""
    # Ids are short and printable; anything else cannot exist (and PostgreSQL refuses NUL in text).
    sweep = session.get(Sweep, sweep_id) if len(sweep_id) <= 64 and sweep_id.isprintable() else None
    if sweep is not None and principal is not None and settings is not None:
        sweep = sweep if can_read(principal, sweep, settings) else None
    if sweep is None:
        raise ApiError(404, f"no sweep with id {sweep_id!r}", loc=("path", "sweep_id"))
    return sweep


def find_sweeps(
    session: Session,
    principal: Principal,
    settings: Settings,
    *,
    statuses: list[str] | None = None,
    owner: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Sweep], int]:
    """The sweeps ``principal`` may see (newest first), filtered; and how many there are in all."""
    query = select(Sweep)
    count = select(func.count()).select_from(Sweep)
    conditions = []
    if not (settings.public_read or principal.is_admin):
        conditions.append(Sweep.owner == principal.name)
    if statuses:
        conditions.append(Sweep.status.in_(statuses))
    if owner:
        conditions.append(Sweep.owner == owner)
    if conditions:
        query, count = query.where(*conditions), count.where(*conditions)
    rows = session.scalars(query.order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit).offset(offset))
    return list(rows), int(session.scalar(count) or 0)


def may_cancel(sweep: Sweep, principal: Principal) -> bool:
    """Users cancel their own sweeps; admins any (anonymous readers none)."""
    if principal == ANONYMOUS:
        return False
    return sweep.owner == principal.name or principal.is_admin


def request_cancel(session: Session, sweep: Sweep, principal: Principal) -> None:
    """Marks the sweep for cancellation (the monitor or the route stops its Ray job). Users cancel their
    own sweeps; admins any."""
    if not may_cancel(sweep, principal):
        raise ApiError(403, f"sweep {sweep.id} belongs to {sweep.owner}; only its owner or an admin may cancel it",
                       loc=("path", "sweep_id"))
    if sweep.status_enum.is_final:
        raise ApiError(409, f"sweep {sweep.id} has already ended ({sweep.status})", loc=("path", "sweep_id"))
    sweep.cancel_requested = True
    if sweep.ray_submission_id is None:  # never reached Ray: nothing to stop
        sweep.status = SweepStatus.CANCELLED.value
        sweep.queue_position = None
        sweep.message = f"cancelled by {principal.name} before it started"
        sweep.finished_at = datetime.now(UTC)
    else:
        sweep.message = f"cancel requested by {principal.name}; stopping Ray job {sweep.ray_submission_id}"
    session.commit()


def sweep_links(sweep: Sweep, settings: Settings, base_url: str) -> SweepLinks:
    api = f"{base_url}/v1/sweeps/{sweep.id}"
    dashboard = (
        f"{settings.resolved_dashboard_url}/#/jobs/{sweep.ray_submission_id}" if sweep.ray_submission_id else None
    )
    return SweepLinks(
        self=api,
        report=f"{api}/report?format=html",
        trials=f"{api}/trials",
        best_config=f"{api}/best-config?format=yaml",
        cancel=f"{api}/cancel",
        dashboard=dashboard,
        grafana=grafana_link(sweep.id, settings),
    )


def _counts(progress: dict[str, Any] | None) -> dict[str, int]:
    counts = {s: 0 for s in TRIAL_STATUSES}
    raw = (progress or {}).get("counts") or {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            if isinstance(v, int | float):
                counts[str(k)] = int(v)
    return counts


def _best(progress: dict[str, Any] | None) -> BestSoFar | None:
    raw = (progress or {}).get("best")
    if not isinstance(raw, dict):
        return None
    try:
        return BestSoFar.model_validate(raw)
    except ValueError:
        return None


def _num(progress: dict[str, Any] | None, key: str) -> Any:
    value = (progress or {}).get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _tracking(progress: dict[str, Any] | None) -> dict[str, TrackerState]:
    raw = (progress or {}).get("tracking")
    if not isinstance(raw, dict):
        return {}
    out = {}
    for name, state in raw.items():
        try:
            out[str(name)] = TrackerState.model_validate(state)
        except ValueError:
            continue
    return out


def sweep_public(
    sweep: Sweep, settings: Settings, base_url: str, *, detail: bool = False, show_paths: bool = False
) -> SweepPublic:
    """The API's view of a sweep; server paths (``sweep_dir``) only with ``show_paths`` (admins)."""
    progress = sweep.progress
    fields: dict[str, Any] = dict(
        id=sweep.id,
        name=sweep.name,
        owner=sweep.owner,
        preset=sweep.preset,
        status=sweep.status,
        message=sweep.message,
        num_trials=sweep.num_trials if sweep.num_trials is not None else _num(progress, "total_trials"),
        trial_counts=_counts(progress),
        best=_best(progress),
        tokens=_num(progress, "tokens"),
        elapsed_s=_num(progress, "elapsed_s"),
        eta_s=_num(progress, "eta_s") if not sweep.status_enum.is_final else None,
        tracking=_tracking(progress),
        ray_submission_id=sweep.ray_submission_id,
        ray_job_status=sweep.ray_job_status,
        cancel_requested=sweep.cancel_requested,
        queue_position=sweep.queue_position,
        sweep_dir=sweep.sweep_dir if show_paths else None,
        message_detail=sweep.message_detail if show_paths else None,
        created_at=sweep.created_at,
        submitted_at=sweep.submitted_at,
        started_at=sweep.started_at,
        finished_at=sweep.finished_at,
        links=sweep_links(sweep, settings, base_url),
    )
    if detail:
        return SweepDetail(spec=sweep.spec, **fields)
    return SweepPublic(**fields)
