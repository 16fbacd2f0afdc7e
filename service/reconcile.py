"""Keeping the database's view of each sweep true to Ray and the sweep dir. Runs at start-up over
every non-final sweep (so a restarted service picks up where the old one was, whatever happened
meanwhile) and then on every monitor tick."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select

from search_spaces.run.sweep_dir import FINAL_SWEEP_STATUSES, mark_ended, read_progress
from service.db import session_scope
from service.failure import failure_text, strip_control
from service.models import FINAL_STATUSES, Sweep, SweepStatus
from service.ray_client import FINAL_JOB_STATUSES, LIVE_JOB_STATUSES, JobInfo, RayUnavailable
from service.state import ServiceState

log = logging.getLogger("lossweep.service")

_FINAL = [s.value for s in FINAL_STATUSES]


def final_status(sweep: Sweep, job: JobInfo, driver_status: str | None) -> SweepStatus:
    """The sweep's end, from Ray's job status and what the driver wrote (its word wins when it has one)."""
    if job.status == "STOPPED" or (sweep.cancel_requested and job.status == "FAILED"):
        return SweepStatus.CANCELLED
    if driver_status in FINAL_SWEEP_STATUSES:
        return SweepStatus(driver_status)
    return SweepStatus.SUCCEEDED if job.status == "SUCCEEDED" else SweepStatus.FAILED


def failure_message(state: ServiceState, job: JobInfo, sweep_dir: str = "") -> tuple[str, str]:
    """``(reason, detail)`` of a failed job from Ray's message and the last lines of the driver's log
    (``service.failure``): the one line its owner sees and what only admins see."""
    try:
        lines = state.ray.logs(job.submission_id).splitlines()
    except RayUnavailable:
        lines = []
    return failure_text(job.message, lines, sweep_dir)


def refresh(state: ServiceState, sweep: Sweep) -> None:
    """Updates one non-final sweep from the sweep dir and Ray (in place; the caller commits)."""
    try:
        progress = read_progress(sweep.sweep_dir)
    except OSError as exc:
        log.warning("sweep %s: cannot read progress: %s", sweep.id, exc)
        progress = None
    if progress is not None and progress != sweep.progress:
        sweep.progress = progress

    if sweep.ray_submission_id is None:
        return  # waiting in our queue; service.queue starts it
    if sweep.cancel_requested and sweep.ray_job_status not in FINAL_JOB_STATUSES:
        state.ray.stop(sweep.ray_submission_id)  # repeat until Ray reports the job ended

    job = state.ray.status(sweep.ray_submission_id)
    now = datetime.now(UTC)
    if job is None:
        driver_status = (progress or {}).get("status")
        if sweep.cancel_requested:
            status = SweepStatus.CANCELLED
        elif driver_status in FINAL_SWEEP_STATUSES:
            status = SweepStatus(driver_status)
        else:
            status = SweepStatus.FAILED
        sweep.status = status.value
        sweep.ray_job_status = None  # no job on Ray: nothing left to stop
        sweep.message = f"Ray has no record of job {sweep.ray_submission_id} (was the cluster restarted?)"
        sweep.finished_at = sweep.finished_at or now
        _record_end(sweep, status)
        return

    sweep.ray_job_status = job.status
    if job.start_time and sweep.started_at is None and job.status != "PENDING":
        sweep.started_at = job.start_time
    if job.status == "PENDING":
        sweep.status = SweepStatus.QUEUED.value
        pending = strip_control(job.message).strip().splitlines()[:1]
        sweep.message = f"Ray job {job.submission_id} is pending: {pending[0] if pending else ''}".rstrip(": ")
    elif job.status == "RUNNING":
        sweep.status = SweepStatus.RUNNING.value
        sweep.started_at = sweep.started_at or now
        if not sweep.cancel_requested:
            sweep.message = "running"
    else:
        driver_status = (progress or {}).get("status")
        status = final_status(sweep, job, driver_status)
        sweep.status = status.value
        sweep.finished_at = job.end_time or now
        sweep.started_at = sweep.started_at or job.start_time
        if status is SweepStatus.CANCELLED:
            sweep.message = "cancelled; results so far are kept and reportable"
        elif status is SweepStatus.SUCCEEDED:
            sweep.message = "finished"
        else:
            sweep.message, sweep.message_detail = failure_message(state, job, sweep.sweep_dir)
        _record_end(sweep, status)


def _record_end(sweep: Sweep, status: SweepStatus) -> None:
    try:
        mark_ended(sweep.sweep_dir, status.value)
        sweep.progress = read_progress(sweep.sweep_dir) or sweep.progress
    except OSError as exc:
        log.warning("sweep %s: cannot record its end in progress.json: %s", sweep.id, exc)


def stop_orphans(state: ServiceState) -> int:
    """Stops Ray jobs still alive for sweeps that have ended (a cancel that raced the submission, a job
    stopped from elsewhere but restarted): asks Ray each pass until it reports the job ended. Returns
    how many such jobs were found."""
    with session_scope(state.sessions) as session:
        ids = list(session.scalars(select(Sweep.id).where(
            Sweep.status.in_(_FINAL), Sweep.ray_submission_id.is_not(None), Sweep.ray_job_status.in_(LIVE_JOB_STATUSES)
        )))
    for sweep_id in ids:
        with session_scope(state.sessions) as session:
            sweep = session.get(Sweep, sweep_id)
            if sweep is None or sweep.ray_submission_id is None:
                continue
            job = state.ray.status(sweep.ray_submission_id)
            if job is not None and not job.is_final:
                log.warning("sweep %s has ended (%s) but Ray job %s is %s: stopping it",
                            sweep.id, sweep.status, job.submission_id, job.status)
                state.ray.stop(job.submission_id)
            sweep.ray_job_status = job.status if job is not None else None
    return len(ids)


def reconcile(state: ServiceState, sweep_ids: list[str] | None = None) -> int:
    """Refreshes every sweep on Ray that has not ended (or the given ones); returns how many were looked at. Each sweep
    is committed on its own so one bad sweep dir cannot hold back the others."""
    with session_scope(state.sessions) as session:
        # Sweeps still waiting in our queue have neither a Ray job nor results: service.queue handles them.
        query = select(Sweep.id).where(Sweep.status.not_in(_FINAL), Sweep.ray_submission_id.is_not(None))
        if sweep_ids is not None:
            query = query.where(Sweep.id.in_(sweep_ids))
        ids = list(session.scalars(query))
    ray_down: str | None = None
    for sweep_id in ids:
        with session_scope(state.sessions) as session:
            sweep = session.get(Sweep, sweep_id)
            if sweep is None or sweep.status_enum.is_final:
                continue
            if ray_down is not None and sweep.ray_submission_id is not None:
                sweep.message = f"status unknown: {ray_down}"
                continue
            try:
                refresh(state, sweep)
            except RayUnavailable as exc:
                ray_down = str(exc)
                sweep.message = f"status unknown: {ray_down}"
                log.warning("reconcile: %s", exc)
    return len(ids)
