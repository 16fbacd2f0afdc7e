"""The Ray Jobs API as the service sees it. The only module of ``service/`` that imports ``ray``.

Each sweep runs as one Ray Job whose entrypoint is the sweep driver,
``<python> -m search_spaces.run.job <sweep dir>/spec.yaml <sweep dir>``, with a submission id derived from the
sweep id (``lossweep-<sweep id>``) and readable metadata, so the dashboard's job list says what each
job is and a submission can be repeated safely: Ray refuses a second job with the same submission id.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ray
from ray.dashboard.modules.dashboard_sdk import SubmissionClient
from ray.job_submission import JobSubmissionClient

SUBMISSION_PREFIX = "lossweep-"
SUBMIT_TIMEOUT_S = 120.0
FINAL_JOB_STATUSES = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})
LIVE_JOB_STATUSES = ("PENDING", "RUNNING")


class RayUnavailable(Exception):
    """Ray's Jobs API did not answer (or refused our credentials)."""


class RayRefused(Exception):
    """Ray answered and refused this job (a bad runtime env, a rejected entrypoint): retrying the same
    submission will not help, and other sweeps are not affected."""


@dataclass(frozen=True)
class JobInfo:
    submission_id: str
    status: str  # PENDING | RUNNING | STOPPED | SUCCEEDED | FAILED
    message: str
    start_time: datetime | None
    end_time: datetime | None
    metadata: Mapping[str, str]

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_JOB_STATUSES


def submission_id_for(sweep_id: str) -> str:
    return SUBMISSION_PREFIX + sweep_id


def driver_entrypoint(python: str, spec_path: str, sweep_dir: str) -> str:
    # Ray runs the entrypoint through /bin/sh; `exec` makes the driver the job's own process, so stopping
    # the job signals the driver itself instead of leaving it orphaned behind a killed shell.
    return "exec " + " ".join(shlex.quote(p) for p in (python, "-m", "search_spaces.run.job", spec_path, sweep_dir))


def _ms_to_dt(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromtimestamp(int(value) / 1000.0, UTC)


class _TimeoutClient(JobSubmissionClient):
    """``JobSubmissionClient`` whose HTTP requests time out: a hung head must not hang the service."""

    def __init__(self, address: str, *, timeout_s: float, headers: dict[str, str]) -> None:
        self._timeout_s = timeout_s
        if "://" not in address:
            # A GCS address (host:port) needs Ray's own lookup of the dashboard URL.
            super().__init__(address, headers=headers)
            return
        # JobSubmissionClient.__init__ replaces the address it is given by RAY_API_SERVER_ADDRESS or
        # RAY_ADDRESS from the environment; the service's configured cluster must win over whatever
        # the process happens to inherit, so the HTTP URL goes to the base class as it is.
        self._client_ray_version = ray.__version__
        SubmissionClient.__init__(self, address=address, headers=headers)
        self._check_connection_and_version(
            min_version="2.0", version_error_message="the Ray cluster is too old for the Jobs API (needs >= 2.0)"
        )

    def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:  # type: ignore[override]
        # Submitting waits for Ray to start the job's supervisor actor: seconds on a busy node.
        slow = method == "POST" and endpoint.rstrip("/") == "/api/jobs"
        kwargs.setdefault("timeout", max(self._timeout_s, SUBMIT_TIMEOUT_S) if slow else self._timeout_s)
        return super()._do_request(method, endpoint, **kwargs)


class RayJobs:
    """A thread-safe, lazily connected handle on one cluster's Jobs API."""

    def __init__(self, address: str, *, auth_token: str | None = None, timeout_s: float = 10.0) -> None:
        self.address = address
        self._headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else {}
        self._timeout_s = timeout_s
        self._client: _TimeoutClient | None = None
        self._lock = threading.Lock()
        self._nodes: tuple[float, list[dict[str, float]] | None] | None = None

    def _get(self) -> _TimeoutClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = _TimeoutClient(self.address, timeout_s=self._timeout_s, headers=dict(self._headers))
                except Exception as exc:  # ConnectionError, AuthenticationError, RuntimeError, requests errors
                    raise RayUnavailable(f"Ray Jobs API at {self.address} is unreachable: {_short(exc)}") from exc
            return self._client

    def _call(self, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        client = self._get()
        try:
            return getattr(client, fn_name)(*args, **kwargs)
        except RuntimeError:
            raise  # an answer from Ray (e.g. the job does not exist): the connection is fine
        except Exception as exc:
            with self._lock:
                self._client = None  # reconnect (and re-check the version) next time
            raise RayUnavailable(f"Ray Jobs API at {self.address}: {_short(exc)}") from exc

    def ping(self) -> str:
        """Raises ``RayUnavailable`` unless the Jobs API answers; returns the cluster's Ray version."""
        client = self._get()
        try:
            response = client._do_request("GET", "/api/version")
            response.raise_for_status()
            return str(response.json().get("ray_version", "?"))
        except Exception as exc:
            with self._lock:
                self._client = None
            raise RayUnavailable(f"Ray Jobs API at {self.address}: {_short(exc)}") from exc

    def submit(
        self,
        *,
        submission_id: str,
        entrypoint: str,
        metadata: Mapping[str, str],
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Submits the job; when a job with this submission id already exists (a repeated submission
        after a crash), returns its id instead of starting a second one."""
        runtime_env = {"env_vars": dict(env)} if env else None
        try:
            return str(
                self._call(
                    "submit_job",
                    entrypoint=entrypoint,
                    submission_id=submission_id,
                    metadata={k: str(v) for k, v in metadata.items()},
                    runtime_env=runtime_env,
                )
            )
        except RuntimeError as exc:
            if self.status(submission_id) is not None:
                return submission_id
            raise RayRefused(f"Ray refused the job {submission_id}: {_short(exc)}") from exc

    def status(self, submission_id: str) -> JobInfo | None:
        """The job's state, or None when Ray does not know this submission id."""
        client = self._get()
        try:
            response = client._do_request("GET", f"/api/jobs/{submission_id}")
        except Exception as exc:
            with self._lock:
                self._client = None
            raise RayUnavailable(f"Ray Jobs API at {self.address}: {_short(exc)}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RayUnavailable(f"Ray Jobs API answered {response.status_code}: {response.text[:200]}")
        data = response.json()
        return JobInfo(
            submission_id=str(data.get("submission_id") or submission_id),
            status=str(data.get("status", "PENDING")),
            message=str(data.get("message") or ""),
            start_time=_ms_to_dt(data.get("start_time")),
            end_time=_ms_to_dt(data.get("end_time")),
            metadata=data.get("metadata") or {},
        )

    def nodes(self) -> list[dict[str, float]]:
        """The total resources of each live node (``{"CPU": 8.0, "GPU": 1.0, "memory": ...}``), from the
        dashboard's state API; raises ``RayUnavailable`` when it does not answer."""
        client = self._get()
        try:
            response = client._do_request("GET", "/api/v0/nodes?limit=10000")
            response.raise_for_status()
            rows = response.json()["data"]["result"]["result"]
        except Exception as exc:
            raise RayUnavailable(f"Ray state API at {self.address}: {_short(exc)}") from exc
        return [
            {str(k): float(v) for k, v in (row.get("resources_total") or {}).items() if isinstance(v, int | float)}
            for row in rows
            if row.get("state", "ALIVE") == "ALIVE"
        ]

    def nodes_cached(self, max_age_s: float = 30.0) -> list[dict[str, float]] | None:
        """``nodes()``, at most one call per ``max_age_s``; None while Ray does not answer."""
        now = time.monotonic()
        with self._lock:
            if self._nodes is not None and now - self._nodes[0] < max_age_s:
                return self._nodes[1]
        try:
            nodes: list[dict[str, float]] | None = self.nodes()
        except RayUnavailable:
            nodes = None
        with self._lock:
            self._nodes = (now, nodes)
        return nodes

    def stop(self, submission_id: str) -> bool:
        """Asks Ray to stop the job (SIGTERM, then SIGKILL); False when it was not running."""
        try:
            return bool(self._call("stop_job", submission_id))
        except RuntimeError:
            return False

    def logs(self, submission_id: str) -> str:
        try:
            return str(self._call("get_job_logs", submission_id))
        except RuntimeError:
            return ""


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
