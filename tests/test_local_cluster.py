"""The local cluster helper against real `ray start` processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lossweep.local_cluster import (
    TRIAL_DRIVER_RESOURCE,
    LocalCluster,
    auth_headers,
    cluster_pids,
    ensure_local_cluster,
    is_alive,
    ray_env,
    stop_local_cluster,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _redis_ping() -> bytes | None:
    """Redis's reply to PING on 6379, or None when nothing listens there."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64)
    except OSError:
        return None


def _lossweep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lossweep.cli.main", *args], capture_output=True, text=True, timeout=60
    )


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_start_reuse_stop(tmp_path: Path) -> None:
    redis_before = _redis_ping()
    state = tmp_path / "state"
    state.mkdir()
    # A record left by a cluster that died is replaced, not trusted.
    dead = LocalCluster(
        address="127.0.0.1:1",
        dashboard_url="http://127.0.0.1:1",
        temp_dir=tmp_path / "gone",
        auth_token=None,
        started=False,
        state_dir=state,
    )
    (state / "cluster.json").write_text(json.dumps(dead.to_record()))

    cluster = ensure_local_cluster(state, num_cpus=1)
    try:
        assert cluster.started and cluster.address != dead.address
        assert not cluster.address.endswith(":6379")
        assert not cluster.dashboard_url.endswith(":6379")
        assert (state / "cluster.json").is_file()
        record = json.loads((state / "cluster.json").read_text())
        assert record["address"] == cluster.address
        assert cluster.auth_token and cluster.auth_token not in (state / "cluster.json").read_text()
        assert len(str(cluster.temp_dir)) < 40  # Unix socket paths below it stay under ~107 bytes

        # The dashboard answers with the token and refuses without it.
        status, body = _get(f"{cluster.dashboard_url}/api/version", auth_headers(cluster))
        assert status == 200 and json.loads(body)["ray_version"]
        status, _ = _get(f"{cluster.dashboard_url}/api/version", {})
        assert status == 401

        # Same state dir, cluster alive: the very same cluster, not started again.
        again = ensure_local_cluster(state, num_cpus=1)
        assert not again.started
        assert (again.address, again.dashboard_url, again.temp_dir) == (
            cluster.address,
            cluster.dashboard_url,
            cluster.temp_dir,
        )

        # A fresh interpreter reaches it with nothing but ray_env() and sees the trial_driver slots.
        probe = "import ray; ray.init(); print(dict(ray.cluster_resources()))"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **ray_env(cluster)}
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        resources = eval(out.stdout.strip().splitlines()[-1])  # a dict literal printed by the probe
        assert resources["CPU"] == 1.0
        assert resources[TRIAL_DRIVER_RESOURCE] >= 1

        # Redis still owns 6379 and still answers.
        assert _redis_ping() == redis_before

        status = _lossweep("cluster", "status", "--home", str(state))
        assert status.returncode == 0 and "running" in status.stdout and cluster.address in status.stdout
        stopped = _lossweep("cluster", "stop", "--home", str(state))
        assert stopped.returncode == 0, stopped.stderr
    finally:
        stop_local_cluster(cluster)  # idempotent; ends it should the command above have failed

    assert cluster_pids(cluster.temp_dir, cluster.address) == []
    assert not is_alive(cluster)
    assert not cluster.temp_dir.exists()
    assert not (state / "cluster.json").exists()


def test_session_fixture_cluster(ray_cluster: LocalCluster, ray_connected) -> None:
    resources = ray_connected.cluster_resources()
    assert resources["CPU"] == 2.0
    assert resources[TRIAL_DRIVER_RESOURCE] >= 1
    assert is_alive(ray_cluster)


def test_cluster_stop_stops_the_demo_service_too(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lossweep.cli.client import SERVICE_RECORD
    from lossweep.cli.main import app

    # A stand-in for the demo's service: its command line names the service command, as the real one's does.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "lossweep.cli.main", "serve"])
    try:
        (tmp_path / SERVICE_RECORD).write_text(json.dumps({"url": "http://127.0.0.1:1", "pid": proc.pid, "port": 1}))
        result = CliRunner().invoke(app, ["cluster", "stop", "--home", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert "stopped the demo's service at http://127.0.0.1:1" in result.output
        assert proc.wait(timeout=30) is not None
        assert not (tmp_path / SERVICE_RECORD).exists()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("keep", [False, True])
def test_serve_local_ray_ends_the_head_it_started(tmp_path: Path, keep: bool) -> None:
    """`lossweep serve --local-ray` stopped with SIGTERM stops the head it started; with --keep-ray it
    leaves it and says how to stop it."""
    import os
    import signal
    import time

    import httpx

    from lossweep.local_cluster import cluster_pids, read_cluster, stop_local_cluster
    from tests.fixtures.service import free_port

    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "LOSSWEEP_HOME": str(home)}
    env.pop("LOSSWEEP_DATABASE_URL", None)
    command = [sys.executable, "-m", "lossweep.cli.main", "serve", "--local-ray", "--port", str(port),
               "--log-level", "warning", *(["--keep-ray"] if keep else [])]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cluster = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        cluster = read_cluster(home)
        assert cluster is not None and cluster_pids(cluster.temp_dir, cluster.address)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        if keep:
            assert "keeps running" in out and "lossweep cluster stop" in out
            assert cluster_pids(cluster.temp_dir, cluster.address)
        else:
            assert "stopped the local Ray head" in out
            assert cluster_pids(cluster.temp_dir, cluster.address) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if cluster is not None:
            stop_local_cluster(cluster)
