"""The whole path for real: ``lossweep serve`` (uvicorn, its own process) on a loopback port, the session's
local Ray, tiny sweeps submitted over HTTP and followed to their end; trials and reports downloaded and
checked; a cancel mid-run; the per-user queue; the service killed mid-run and restarted, the sweep still
finishing and reported right."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from tests.fixtures.ray_cluster import stop_lossweep_jobs
from tests.fixtures.service import ServiceProcess

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def tiny(name: str, *, steps: int) -> dict[str, Any]:
    """A sweep of the demo preset cut down to 2 tiny trials."""
    return {
        "preset": "demo",
        "name": name,
        "overrides": TINY_OVERRIDES | {STEPS_KEY: steps},
    }


# Dotted keys of the SweepSpec (search_spaces/spec/sweep_spec.py).
STEPS_KEY = "budget.steps"
TINY_OVERRIDES: dict[str, Any] = {
    "confirm": None,  # the demo confirms on fresh seeds; these tiny sweeps are the search alone
    "model.preset": "tiny",
    "methods": ["baseline", "z_loss"],
    "lr": [3e-3],
    "coefficients": {},
    "seeds": [0],
    "search.algorithm": "grid",
    "scheduler.name": "none",
    "budget.eval_interval": 5,
    "budget.warmup_steps": 0,
    "data.seq_len": 32,
    "data.batch_size": 4,
    "data.eval_tokens": 32, "data.test_tokens": 64,
    "max_concurrent_trials": 2,  # both trials at once: the test cluster has 2 CPUs
}


class Service:
    def __init__(self, home: Path, cluster: Any, extra_env: dict[str, str] | None = None) -> None:
        from service.auth import create_token
        from service.db import init_db, make_engine, make_sessionmaker, session_scope

        self.home = home
        self.env = {
            "LOSSWEEP_HOME": str(home),
            "LOSSWEEP_RAY_ADDRESS": cluster.dashboard_url,
            "LOSSWEEP_RAY_AUTH_TOKEN": cluster.auth_token or "",
            "LOSSWEEP_POLL_INTERVAL_S": "0.5",
            "LOSSWEEP_MAX_CONCURRENT_SWEEPS_PER_USER": "1",
            **(extra_env or {}),
        }
        engine = make_engine(f"sqlite:///{home / 'lossweep.db'}")
        init_db(engine)
        with session_scope(make_sessionmaker(engine)) as session:
            self.token = create_token(session, "alice")[1]
        engine.dispose()
        self.proc = ServiceProcess(self.env, log_path=home / "service.log").start()

    @property
    def url(self) -> str:
        return self.proc.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120)

    def restart(self) -> None:
        port = self.proc.port
        self.proc = ServiceProcess(self.env, port=port, log_path=self.home / "service.log").start()

    def wait(self, sweep_id: str, until: Any, timeout: float = 300.0, what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        sweep: dict[str, Any] = {}
        with self.client() as c:
            while time.monotonic() < deadline:
                sweep = c.get(f"/v1/sweeps/{sweep_id}").json()
                if until(sweep):
                    return sweep
                if sweep.get("status") in FINAL and not until(sweep):
                    break
                time.sleep(0.5)
        log = (self.home / "service.log").read_text()[-3000:]
        raise AssertionError(f"sweep {sweep_id} never became {what}: {json.dumps(sweep)[:1500]}\nservice log:\n{log}")


@pytest.fixture
def service(ray_cluster: Any, tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path, ray_cluster)
    try:
        yield svc
    finally:
        svc.proc.stop()
        stop_lossweep_jobs(ray_cluster)


def check_finished_sweep(c: httpx.Client, sweep: dict[str, Any]) -> None:
    sid = sweep["id"]
    counts = sweep["trial_counts"]
    assert sum(counts.values()) == sweep["num_trials"] == 2, counts
    assert counts["TERMINATED"] + counts["STOPPED"] + counts["DIVERGED"] == 2, counts
    trials = c.get(f"/v1/sweeps/{sid}/trials").json()["trials"]
    assert len(trials) == 2 and {t["method"] for t in trials} == {"baseline", "z_loss"}
    rows = list(csv.DictReader(io.StringIO(c.get(f"/v1/sweeps/{sid}/trials", params={"format": "csv"}).text)))
    assert {r["trial_id"] for r in rows} == {t["trial_id"] for t in trials}
    table = pq.read_table(io.BytesIO(c.get(f"/v1/sweeps/{sid}/trials", params={"format": "parquet"}).content))
    assert table.num_rows == 2
    trial_id = trials[0]["trial_id"]
    metrics = c.get(f"/v1/sweeps/{sid}/trials/{trial_id}/metrics").json()
    assert metrics["rows"] and all(r["trial_id"] == trial_id for r in metrics["rows"])
    report = c.get(f"/v1/sweeps/{sid}/report", params={"format": "html"})
    assert report.status_code == 200, report.text
    assert f'filename="lossweep-{sid}-report.html"' in report.headers["content-disposition"]  # final: not partial
    data = c.get(f"/v1/sweeps/{sid}/report", params={"format": "json"}).json()
    assert sid in json.dumps(data) or sweep["name"] in json.dumps(data)
    best = c.get(f"/v1/sweeps/{sid}/best-config", params={"format": "json"}).json()
    finite = [t for t in trials if t["status"] != "DIVERGED"]
    assert best["val_loss"] == pytest.approx(min(t["best_val_loss"] for t in finite))
    assert yaml.safe_load(c.get(f"/v1/sweeps/{sid}/best-config").text)


def test_sweep_submitted_over_http_runs_to_success(service: Service, ray_cluster: Any) -> None:
    with service.client() as c:
        created = c.post("/v1/sweeps", json=tiny("e2e-ok", steps=10), headers={"Idempotency-Key": "e2e-ok"})
        assert created.status_code == 201, created.text
        sweep = created.json()
        sid = sweep["id"]
        assert sweep["ray_submission_id"] == f"lossweep-{sid}"
        assert sweep["links"]["dashboard"] == f"{ray_cluster.dashboard_url}/#/jobs/lossweep-{sid}"
        again = c.post("/v1/sweeps", json=tiny("e2e-ok", steps=10), headers={"Idempotency-Key": "e2e-ok"})
        assert again.json()["id"] == sid  # no second job

        done = service.wait(sid, lambda s: s["status"] in FINAL, what="final")
        assert done["status"] == "SUCCEEDED", done
        assert done["best"]["val_loss"] > 0 and done["finished_at"] and done["started_at"]
        check_finished_sweep(c, done)
        assert c.get("/readyz").status_code == 200

    # The dashboard's job list says what the job is.
    from service.ray_client import RayJobs

    job = RayJobs(ray_cluster.dashboard_url, auth_token=ray_cluster.auth_token).status(f"lossweep-{sid}")
    assert job is not None and job.status == "SUCCEEDED"
    assert job.metadata["lossweep_sweep_id"] == sid and job.metadata["user"] == "alice"
    assert job.metadata["preset"] == "demo" and job.metadata["name"] == "e2e-ok"


def test_cancel_queue_and_restart_mid_run(service: Service) -> None:
    with service.client() as c:
        slow = c.post("/v1/sweeps", json=tiny("e2e-cancel", steps=100_000)).json()
        queued = c.post("/v1/sweeps", json=tiny("e2e-restart", steps=60)).json()
        # alice may run one sweep at a time: the second waits its turn.
        assert queued["status"] == "QUEUED" and queued["ray_submission_id"] is None
        assert "position 1" in queued["message"]

        service.wait(slow["id"], lambda s: s["trial_counts"]["RUNNING"] >= 1, what="running a trial")
        cancel = c.post(f"/v1/sweeps/{slow['id']}/cancel")
        assert cancel.status_code == 202 and cancel.json()["cancel_requested"]
        cancelled = service.wait(slow["id"], lambda s: s["status"] in FINAL, what="final")
        assert cancelled["status"] == "CANCELLED" and cancelled["ray_job_status"] == "STOPPED"
        # Results so far are kept and reportable.
        report = c.get(f"/v1/sweeps/{slow['id']}/report", params={"format": "md"})
        assert report.status_code == 200 and report.text.strip()
        assert c.get(f"/v1/sweeps/{slow['id']}/trials").status_code == 200

        # Capacity freed: the queued sweep starts on its own.
        running = service.wait(queued["id"], lambda s: s["trial_counts"]["RUNNING"] >= 1, what="running a trial")
        assert running["status"] == "RUNNING" and running["ray_submission_id"]

    service.proc.kill()  # a crash: no shutdown handlers
    time.sleep(1.0)
    service.restart()

    done = service.wait(queued["id"], lambda s: s["status"] in FINAL, what="final")
    assert done["status"] == "SUCCEEDED", done
    with service.client() as c:
        check_finished_sweep(c, done)
        assert c.get(f"/v1/sweeps/{slow['id']}").json()["status"] == "CANCELLED"
