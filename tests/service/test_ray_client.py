"""The service's Ray client talks to the cluster it is configured with, whatever the environment says."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.ray_client import RayJobs, RayUnavailable
from tests.fixtures.service import unreachable_ray


class _VersionOnly(BaseHTTPRequestHandler):
    """Answers ``/api/version`` like a Ray dashboard would; nothing else."""

    def do_GET(self) -> None:
        import ray

        body = json.dumps({"version": "4", "ray_version": ray.__version__, "ray_commit": "x"}).encode()
        self.send_response(200 if self.path == "/api/version" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def decoy_dashboard() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _VersionOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_environment_does_not_redirect_the_configured_cluster(
    decoy_dashboard: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray's own JobSubmissionClient would follow these variables to the decoy and report it alive.
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", decoy_dashboard)
    monkeypatch.setenv("RAY_ADDRESS", decoy_dashboard)
    with pytest.raises(RayUnavailable, match=r"unreachable|Ray Jobs API"):
        RayJobs(unreachable_ray(), timeout_s=3).ping()


def test_the_configured_cluster_answers(decoy_dashboard: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    import ray

    assert RayJobs(decoy_dashboard, timeout_s=3).ping() == ray.__version__
