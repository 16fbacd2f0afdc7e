"""A cancel that lands while the service is inside its Ray submit call must still stop the job, and a
Ray job left alive for a sweep that has ended is stopped by reconciliation. Real local Ray, reached
through a proxy that holds job submissions a few seconds as a busy head does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.ray_client import RayJobs
from tests.e2e.test_service_e2e import tiny
from tests.fixtures.ray_cluster import stop_lossweep_jobs
from tests.fixtures.ray_proxy import DelayingProxy

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def proxy(ray_cluster: Any) -> Iterator[DelayingProxy]:
    p = DelayingProxy(ray_cluster.dashboard_url, delay_s=4.0)
    try:
        yield p
    finally:
        p.close()
        stop_lossweep_jobs(ray_cluster)


def wait_job_final(jobs: RayJobs, submission_id: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        job = jobs.status(submission_id)
        status = job.status if job is not None else "MISSING"
        if status in ("STOPPED", "SUCCEEDED", "FAILED", "MISSING"):
            return status
        time.sleep(0.5)
    return status


def test_cancel_during_submit_stops_the_job(ray_cluster: Any, proxy: DelayingProxy, service_factory) -> None:  # type: ignore[no-untyped-def]
    live = service_factory(ray_address=proxy.url, ray_auth_token=ray_cluster.auth_token, ray_timeout_s=30.0)
    alice = live.client("alice")
    submitted: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: submitted.update(alice.post("/v1/sweeps", json=tiny("race", steps=100_000)).json())
    )
    thread.start()
    assert proxy.submitting.wait(120), "the service never submitted the job"
    # Ray has the job; the service is still waiting for Ray's answer. Cancel now.
    [sweep] = alice.get("/v1/sweeps").json()["items"]
    cancel = alice.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert cancel.status_code == 202 and cancel.json()["status"] == "CANCELLED", cancel.text
    thread.join(120)
    assert submitted.get("id") == sweep["id"]

    jobs = RayJobs(ray_cluster.dashboard_url, auth_token=ray_cluster.auth_token)
    assert wait_job_final(jobs, f"lossweep-{sweep['id']}") == "STOPPED"
    final = alice.get(f"/v1/sweeps/{sweep['id']}").json()
    assert final["status"] == "CANCELLED" and final["ray_submission_id"] == f"lossweep-{sweep['id']}"


def test_reconciliation_stops_a_job_alive_for_an_ended_sweep(ray_cluster: Any, service_factory) -> None:  # type: ignore[no-untyped-def]
    import sys

    from service.db import session_scope
    from service.models import Sweep, SweepStatus
    from service.reconcile import stop_orphans

    live = service_factory(ray_address=ray_cluster.dashboard_url, ray_auth_token=ray_cluster.auth_token,
                           run_monitor=False)
    state = live.app.state.lossweep
    submission_id = "lossweep-orphan-0001"
    try:
        state.ray.submit(submission_id=submission_id, entrypoint=f"{sys.executable} -c 'import time; time.sleep(600)'",
                         metadata={"lossweep": "sweep"})
        with session_scope(state.sessions) as session:
            session.add(Sweep(id="orphan-0001", name="orphan", owner="alice", status=SweepStatus.CANCELLED.value,
                              message="cancelled", spec={}, sweep_dir=str(live.settings.home / "orphan"),
                              ray_submission_id=submission_id, ray_job_status="PENDING", cancel_requested=True))
        assert stop_orphans(state) == 1
        assert wait_job_final(state.ray, submission_id) == "STOPPED"
        stop_orphans(state)
        with session_scope(state.sessions) as session:
            row = session.get(Sweep, "orphan-0001")
            assert row is not None and row.ray_job_status == "STOPPED"
        assert stop_orphans(state) == 0  # nothing alive is left to look at
    finally:
        state.ray.stop(submission_id)


def test_a_refused_job_fails_alone_and_the_queue_goes_on(ray_cluster: Any, service_factory) -> None:  # type: ignore[no-untyped-def]
    proxy = DelayingProxy(ray_cluster.dashboard_url, delay_s=0.0, refuse_name="refused")
    try:
        live = service_factory(ray_address=proxy.url, ray_auth_token=ray_cluster.auth_token)
        alice = live.client("alice")
        refused = alice.post("/v1/sweeps", json=tiny("refused", steps=10)).json()
        assert refused["status"] == "FAILED" and "refused" in refused["message"], refused
        ok = alice.post("/v1/sweeps", json=tiny("accepted", steps=100_000)).json()
        assert ok["ray_submission_id"] == f"lossweep-{ok['id']}", ok  # the queue was not blocked
        alice.post(f"/v1/sweeps/{ok['id']}/cancel")
    finally:
        proxy.close()
        stop_lossweep_jobs(ray_cluster)


def test_a_lost_job_with_a_cancel_requested_ends_cancelled(ray_cluster: Any, service_factory) -> None:  # type: ignore[no-untyped-def]
    import json
    from pathlib import Path

    from search_spaces.run.sweep_dir import read_progress
    from service.db import session_scope
    from service.models import Sweep, SweepStatus
    from service.reconcile import reconcile

    live = service_factory(ray_address=ray_cluster.dashboard_url, ray_auth_token=ray_cluster.auth_token,
                           run_monitor=False)
    state = live.app.state.lossweep
    sweep_dir = Path(live.settings.home) / "lost-0001"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "progress.json").write_text(json.dumps({"status": "RUNNING", "eta_s": 5.0}))
    with session_scope(state.sessions) as session:
        session.add(Sweep(id="lost-0001", name="lost", owner="alice", status=SweepStatus.RUNNING.value,
                          message="cancel requested", spec={}, sweep_dir=str(sweep_dir),
                          ray_submission_id="lossweep-lost-0001-never-submitted", ray_job_status="RUNNING",
                          cancel_requested=True))
    reconcile(state)  # Ray has no such job (a restarted cluster)
    with session_scope(state.sessions) as session:
        row = session.get(Sweep, "lost-0001")
        assert row is not None and row.status == "CANCELLED" and row.ray_job_status is None
    assert read_progress(str(sweep_dir))["status"] == "CANCELLED"  # type: ignore[index]
