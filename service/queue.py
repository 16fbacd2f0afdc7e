"""Per-user concurrency: each user has at most ``max_concurrent_sweeps_per_user`` sweeps on Ray; the
rest wait QUEUED and start in submission order as capacity frees. ``schedule`` runs after every
submission and on every monitor tick (``service.monitor``)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from search_spaces.run.sweep_dir import write_spec_document
from search_spaces.spec.admission import confinement_env
from service.db import session_scope
from service.models import FINAL_STATUSES, Sweep, SweepStatus
from service.ray_client import RayRefused, RayUnavailable, driver_entrypoint, submission_id_for
from service.state import ServiceState

log = logging.getLogger("lossweep.service")

_FINAL = [s.value for s in FINAL_STATUSES]


def job_metadata(sweep: Sweep) -> dict[str, str]:
    """What the Ray dashboard's job list shows for the sweep."""
    meta = {"lossweep_sweep_id": sweep.id, "name": sweep.name, "user": sweep.owner, "lossweep": "sweep"}
    if sweep.preset:
        meta["preset"] = sweep.preset
    return meta


def submit(state: ServiceState, session: Session, sweep: Sweep) -> bool:
    """Writes the spec into the sweep dir, starts the driver as a Ray job and records it; False when the
    sweep was cancelled while Ray was starting the job (the job is then stopped at once).

    Repeatable: the submission id is derived from the sweep id, so a repeat after a crash finds the job
    already there. A cancel may land while the submit call waits on Ray (seconds on a busy head); the
    submission is therefore recorded with a conditional update that only succeeds while the sweep is
    still QUEUED and not cancelled, and a cancel that won gets its job stopped here and by
    reconciliation (``service.reconcile.stop_orphans``) until Ray reports it ended."""
    spec_path = write_spec_document(sweep.sweep_dir, sweep.spec)
    submission_id = submission_id_for(sweep.id)
    entrypoint = driver_entrypoint(state.settings.python_executable, spec_path, sweep.sweep_dir)
    # Every process of the job (driver, trial drivers, Train workers) sees the sweep id: the tag of the
    # trial metrics it exports to Ray (trainables/train/ray_metrics.py).
    # The job is confined to the data roots where it opens files, as the sweep was at admission.
    env = {**state.settings.job_env, "LOSSWEEP_SWEEP_ID": sweep.id,
           **confinement_env(state.settings.resolved_data_roots)}
    state.ray.submit(submission_id=submission_id, entrypoint=entrypoint, metadata=job_metadata(sweep), env=env)
    now = datetime.now(UTC)
    recorded = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep.id, Sweep.status == SweepStatus.QUEUED.value, Sweep.cancel_requested.is_(False))
        .values(ray_submission_id=submission_id, ray_job_status="PENDING", submitted_at=now,
                message=f"submitted to Ray as job {submission_id}", queue_position=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if recorded:
        session.commit()
        session.refresh(sweep)
        return True
    # Cancelled meanwhile: keep the job id on the (ended) row so reconciliation stops it for sure.
    session.execute(
        update(Sweep).where(Sweep.id == sweep.id)
        .values(ray_submission_id=submission_id, ray_job_status="PENDING", submitted_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    log.warning("sweep %s was cancelled while its Ray job was being submitted: stopping %s", sweep.id, submission_id)
    try:
        state.ray.stop(submission_id)
    except RayUnavailable as exc:
        log.warning("sweep %s: cannot stop %s yet (%s); reconciliation retries", sweep.id, submission_id, exc)
    return False


def active_count(session: Session, owner: str) -> int:
    """Sweeps of ``owner`` on Ray now (submitted and not ended)."""
    query = select(func.count()).select_from(Sweep).where(
        Sweep.owner == owner, Sweep.ray_submission_id.is_not(None), Sweep.status.not_in(_FINAL)
    )
    return int(session.scalar(query) or 0)


def waiting_message(owner: str, active: int, limit: int, position: int) -> str:
    return f"waiting: {owner} has {active} sweeps running (limit {limit}); position {position} in the queue"


def schedule(state: ServiceState, owner: str | None = None) -> int:
    """Starts waiting sweeps that fit their owner's limit, oldest first; returns how many started.
    A waiting sweep's ``queue_position`` (and its message) is rewritten only when it changes."""
    limit = state.settings.max_concurrent_sweeps_per_user
    started = 0
    with state.schedule_lock, session_scope(state.sessions) as session:
        if owner is not None and active_count(session, owner) >= limit:
            return 0  # the common case under load: nothing can start, answer without scanning the queue
        # Narrow rows first: a long queue must not mean loading every spec on every tick.
        waiting_q = (
            select(Sweep.id, Sweep.owner, Sweep.cancel_requested, Sweep.queue_position)
            .where(Sweep.status == SweepStatus.QUEUED.value, Sweep.ray_submission_id.is_(None))
            .order_by(Sweep.created_at, Sweep.id)
        )
        if owner is not None:
            waiting_q = waiting_q.where(Sweep.owner == owner)
        waiting = session.execute(waiting_q).all()
        if not waiting:
            return 0
        active = Counter({o: active_count(session, o) for o in {row.owner for row in waiting}})
        moved: set[str] = set()
        blocked: set[str] = set()
        ray_down = False
        position: Counter[str] = Counter()
        for row in waiting:
            if row.cancel_requested:
                continue
            if active[row.owner] >= limit or ray_down or row.owner in blocked:
                position[row.owner] += 1
                stale = row.owner in moved or row.queue_position != position[row.owner]
                if stale and not ray_down:  # positions shifted, or never said: say so
                    sweep = session.get(Sweep, row.id)
                    if sweep is not None:
                        sweep.queue_position = position[row.owner]
                        sweep.message = waiting_message(row.owner, active[row.owner], limit, position[row.owner])
                continue
            sweep = session.get(Sweep, row.id)
            if sweep is None:
                continue
            try:
                if not submit(state, session, sweep):
                    continue
            except RayRefused as exc:
                # A refusal of this job: it fails alone; the queue goes on.
                sweep.status = SweepStatus.FAILED.value
                sweep.message = f"failed: {exc}"
                sweep.finished_at = datetime.now(UTC)
                log.warning("sweep %s: %s", sweep.id, exc)
                session.commit()
                continue
            except RayUnavailable as exc:
                message = f"waiting for Ray: {exc}"
                if sweep.message != message:  # log a change, not every retry
                    log.warning("sweep %s not submitted: %s", sweep.id, exc)
                sweep.message = message
                sweep.queue_position = None  # not behind the user's limit: behind Ray
                ray_down = True  # the others would fail the same way
                continue
            except OSError as exc:
                sweep.message = f"waiting: cannot write the sweep dir {sweep.sweep_dir}: {exc}"
                log.warning("sweep %s not submitted: %s", sweep.id, exc)
                blocked.add(row.owner)  # keep the owner's order: later sweeps wait behind this one
                continue
            active[row.owner] += 1
            moved.add(row.owner)
            started += 1
    return started
