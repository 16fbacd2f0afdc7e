"""A two-node Ray cluster on one machine: a private head (``lossweep.local_cluster``) plus a second
node joined with ``ray start --address``, with its own temp dir and free ports (never 6379).

The second node runs ``ray start --block`` in its own session, so ending that process group ends
exactly its processes; ``stop_local_cluster`` then ends the head's. ``ray stop`` is never used: it
would end every Ray cluster on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lossweep.local_cluster import (
    CLUSTER_ENV,
    LocalCluster,
    auth_headers,
    cluster_pids,
    ensure_local_cluster,
    ray_env,
    stop_local_cluster,
)

JOIN_TIMEOUT_S = 240.0
JOIN_ATTEMPTS = 2
#: A busy 2-core machine can take longer than Ray's defaults to start a node: the raylet waits for its
#: dashboard agent (``agent_register_timeout_ms``) and ``ray start`` for the raylet to register.
SLOW_MACHINE_ENV = {"RAY_raylet_start_wait_time_s": "180", "RAY_agent_register_timeout_ms": "180000"}


@dataclass(frozen=True)
class TwoNodes:
    head: LocalCluster
    worker_temp_dir: Path
    worker_log: Path

    def env(self) -> dict[str, str]:
        """Environment for a driver process (``ray.init()`` finds the head through RAY_ADDRESS)."""
        return {**os.environ, **ray_env(self.head)}


def _free_port() -> int:
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port != 6379:
            return port


def alive_nodes(head: LocalCluster) -> list[str]:
    """Node ids of the cluster's live nodes, from the dashboard's state API (no driver connection)."""
    request = urllib.request.Request(f"{head.dashboard_url}/api/v0/nodes?limit=100", headers=auth_headers(head))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
    except (OSError, ValueError):
        return []
    rows = body.get("data", {}).get("result", {}).get("result", [])
    return [row["node_id"] for row in rows if row.get("state") == "ALIVE"]


@contextlib.contextmanager
def two_node_cluster(state_dir: Path, *, head_cpus: int = 1, worker_cpus: int = 1) -> Iterator[TwoNodes]:
    """A head with ``head_cpus`` CPUs (and the ``trial_driver`` slots) plus a worker node with
    ``worker_cpus`` CPUs; both stopped on exit, whatever happened."""
    head = ensure_local_cluster(state_dir, num_cpus=head_cpus, object_store_mb=256)
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        errors: list[str] = []
        for _attempt in range(JOIN_ATTEMPTS):
            proc, temp_dir = _start_node(head, worker_cpus)
            started.append((proc, temp_dir))
            error = _wait_joined(head, proc, temp_dir)
            if error is None:
                yield TwoNodes(head=head, worker_temp_dir=temp_dir, worker_log=temp_dir / "ray-start.log")
                return
            errors.append(error)
            _stop_node(proc, temp_dir)
        raise RuntimeError(f"the second Ray node did not join {head.address}:\n" + "\n\n".join(errors))
    finally:
        for proc, temp_dir in started:
            _stop_node(proc, temp_dir)
        stop_local_cluster(head)


def _start_node(head: LocalCluster, cpus: int) -> tuple[subprocess.Popen[bytes], Path]:
    temp_dir = Path(tempfile.mkdtemp(prefix="lsw-n2-", dir="/tmp"))
    env = {**os.environ, **ray_env(head), **CLUSTER_ENV, **SLOW_MACHINE_ENV}
    env.pop("RAY_ADDRESS", None)
    cmd = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        f"--address={head.address}",
        f"--num-cpus={cpus}",
        "--num-gpus=0",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={_free_port()}",  # the default 52365 may belong to another cluster
        f"--object-store-memory={256 * 1024 * 1024}",
        "--disable-usage-stats",
        "--block",
    ]
    with open(temp_dir / "ray-start.log", "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, temp_dir


def _wait_joined(head: LocalCluster, proc: subprocess.Popen[bytes], temp_dir: Path) -> str | None:
    """None once the cluster has two live nodes; else what went wrong (the node's own words)."""
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while len(alive_nodes(head)) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            return (temp_dir / "ray-start.log").read_text(errors="replace")[-2000:] + _raylet_errors(temp_dir)
        time.sleep(1.0)
    return None


def _stop_node(proc: subprocess.Popen[bytes], temp_dir: Path) -> None:
    _end_group(proc)
    # Workers the node forked may have left its process group: find them by its temp dir.
    for pid in cluster_pids(temp_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _raylet_errors(temp_dir: Path) -> str:
    logs = sorted(temp_dir.glob("session_*/logs/raylet.out"))
    if not logs:
        return ""
    lines = logs[-1].read_text(errors="replace").splitlines()
    wanted = [line for line in lines if any(w in line for w in ("Check failed", " E ", "FATAL", "Error", "timed out"))]
    return f"\n--- {logs[-1]} (error lines):\n" + "\n".join(wanted[:20])


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
