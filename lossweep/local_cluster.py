"""A private single-node Ray cluster for one user: started once, found again, stopped precisely.

``ensure_local_cluster`` starts ``ray start --head`` with every listening port chosen free (never
Ray's default 6379, which Redis holds on shared machines), its own short ``--temp-dir``, a dashboard
on 127.0.0.1 and a per-cluster auth token, and records the result in ``<state_dir>/cluster.json``.
Called again with the same state dir while that cluster answers, it returns the same cluster with
``started=False``. ``stop_local_cluster`` ends only this cluster's processes (those whose command
line names its temp dir, plus their descendants): ``ray stop`` would end every cluster on the machine.

Token auth (Ray >= 2.59): a head started by ``ray start`` enables it when ``RAY_AUTH_MODE=token`` and a
token is found (``RAY_AUTH_TOKEN``, the file in ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``).
Each cluster gets its own token file in the state dir, so clusters of different users or test
sessions never share a secret. Clients need ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` in
their environment *before* Ray reads its config (``ray_env`` gives them for subprocesses;
``activate`` sets them in the current process and refreshes Ray's cached copies). HTTP calls to the
dashboard's ``/api/*`` pass ``Authorization: Bearer <token>`` (``auth_headers``); ``JobSubmissionClient``
adds that header itself once the environment is set. ``RAY_AUTH_MODE=disabled`` in the caller's
environment starts a cluster without a token (``auth_token`` is then None).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

#: Custom resource that Tune function trainables (trial drivers) request instead of a CPU, so a
#: trial's driver and its Train workers fit on a 2-core machine.
TRIAL_DRIVER_RESOURCE = "trial_driver"
DEFAULT_TRIAL_DRIVER_SLOTS = 16

#: Environment of the cluster's processes (and therefore of every Ray worker in it). Ray Train also
#: propagates these from a driver to its controller and workers, so ``ray_env`` repeats them.
CLUSTER_ENV: dict[str, str] = {
    # Reports and worker-failure detection follow this poll interval (default 2 s): 0.5 s makes short
    # runs end promptly after their last report.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # The preemption watcher is one more actor process per run (about a second of CPU at start-up on
    # a 2-core machine) that only matters on clusters whose nodes are drained (spot/preemptible).
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray Train replaces print() in workers with a logger call per line by default; plain output.
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}

STATE_FILE = "cluster.json"
TOKEN_FILE = "auth_token"
_START_ATTEMPTS = 3
_START_TIMEOUT_S = 180.0
_DASHBOARD_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class LocalCluster:
    """A running (or recorded) local Ray head.

    ``address`` is the GCS ``host:port`` for ``ray.init(address=...)``; ``dashboard_url`` serves the
    dashboard and the Jobs API; ``started`` is True when this call started it, False when reused.
    """

    address: str
    dashboard_url: str
    temp_dir: Path
    auth_token: str | None
    started: bool
    state_dir: Path
    token_path: Path | None = None
    num_cpus: float | None = None

    def to_record(self) -> dict[str, object]:
        record = asdict(self)
        record.pop("started")
        record.pop("auth_token")  # the secret stays in its 0600 file, not in the readable record
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in record.items()}


class ClusterStartError(RuntimeError):
    """``ray start`` failed or the head never answered; the message holds Ray's own output."""


def default_state_dir() -> Path:
    """``$LOSSWEEP_HOME`` or ``~/.lossweep``: where the user's local cluster is recorded."""
    return Path(os.environ.get("LOSSWEEP_HOME") or Path.home() / ".lossweep").expanduser()


def ensure_local_cluster(
    state_dir: Path | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    trial_driver_slots: int = DEFAULT_TRIAL_DRIVER_SLOTS,
    object_store_mb: int = 1024,
) -> LocalCluster:
    """The cluster recorded in ``state_dir`` if it answers, else a newly started one.

    ``num_cpus`` / ``num_gpus`` default to what Ray detects. A reused cluster keeps the resources it
    was started with. Safe to call from several processes at once (a lock file serialises them).
    """
    state = Path(state_dir).expanduser() if state_dir is not None else default_state_dir()
    state.mkdir(parents=True, exist_ok=True)
    with _locked(state / "cluster.lock"):
        recorded = read_cluster(state)
        if recorded is not None:
            if is_alive(recorded):
                return recorded
            # A dead or half-dead record: end whatever is left of it before starting anew.
            stop_local_cluster(recorded)
        return _start(
            state,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            trial_driver_slots=trial_driver_slots,
            object_store_mb=object_store_mb,
        )


def read_cluster(state_dir: Path) -> LocalCluster | None:
    """The cluster recorded in ``state_dir`` (alive or not), or None when there is no record."""
    path = Path(state_dir) / STATE_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ClusterStartError(f"{path}: unreadable cluster record ({exc}); delete it to start afresh") from exc
    token_path = Path(record["token_path"]) if record.get("token_path") else None
    token = token_path.read_text().strip() if token_path is not None and token_path.is_file() else None
    return LocalCluster(
        address=record["address"],
        dashboard_url=record["dashboard_url"],
        temp_dir=Path(record["temp_dir"]),
        auth_token=token,
        started=False,
        state_dir=Path(state_dir),
        token_path=token_path,
        num_cpus=record.get("num_cpus"),
    )


def is_alive(cluster: LocalCluster, *, timeout: float = 3.0) -> bool:
    """True when the GCS port accepts connections and the dashboard accepts this cluster's token."""
    host, _, port = cluster.address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError:
        return False
    # The token check also proves the port now belongs to *this* cluster, not a later process.
    return _dashboard_status(cluster, timeout=timeout) == 200


def auth_headers(cluster: LocalCluster) -> dict[str, str]:
    """HTTP headers for the dashboard's ``/api/*`` and the Jobs API."""
    return {"Authorization": f"Bearer {cluster.auth_token}"} if cluster.auth_token else {}


def ray_env(cluster: LocalCluster) -> dict[str, str]:
    """Environment variables a subprocess needs to use this cluster (``ray.init()``, the Jobs SDK,
    ``ray job submit``), plus the Ray Train settings the cluster itself runs with."""
    env = dict(CLUSTER_ENV)
    env["RAY_ADDRESS"] = cluster.address
    env["RAY_API_SERVER_ADDRESS"] = cluster.dashboard_url
    if cluster.token_path is not None:
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN_PATH"] = str(cluster.token_path)
    else:
        env["RAY_AUTH_MODE"] = "disabled"
    return env


def activate(cluster: LocalCluster) -> None:
    """Make this process able to ``ray.init(address=cluster.address)`` and use the Jobs SDK.

    Ray reads ``RAY_AUTH_MODE`` and the token once, when ``ray`` is imported; setting the variables
    afterwards has no effect until those cached copies are refreshed, which this does.
    """
    env = ray_env(cluster)
    env.pop("RAY_ADDRESS")  # callers pass the address explicitly; RAY_ADDRESS would redirect every ray.init()
    os.environ.update(env)
    if "RAY_AUTH_TOKEN" in os.environ and cluster.token_path is not None:
        del os.environ["RAY_AUTH_TOKEN"]  # it outranks RAY_AUTH_TOKEN_PATH
    if "ray" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def init_driver(address: str, cluster: LocalCluster | None = None) -> None:
    """Connects this process to Ray as a driver (``ray.init``), quietly (workers' output stays in
    their log files).

    With ``cluster`` (one of ours) its auth settings are activated first. For any other address the
    Ray Train settings of ``CLUSTER_ENV`` are put into this process's environment unless already set:
    Ray Train passes them from the driver to its controller and workers.
    """
    import ray

    if cluster is not None:
        activate(cluster)
    for key, value in CLUSTER_ENV.items():
        os.environ.setdefault(key, value)
    ray.init(address=address, logging_level="WARNING", log_to_driver=False)


def stop_local_cluster(cluster: LocalCluster, *, timeout: float = 5.0, keep_logs: bool = False) -> None:
    """End this cluster's processes only (SIGTERM, then SIGKILL after ``timeout``), drop its record and
    (unless ``keep_logs``) its temp dir.

    A process belongs to the cluster when its command line names the cluster's temp dir (GCS, raylet,
    dashboard, monitors) or it descends from such a process (workers, agents; they rename themselves
    ``ray::...`` and no longer show the path).
    """
    # The tree is taken before any signal: once a parent dies its children are reparented to init and
    # can no longer be traced to the temp dir.
    address = cluster.address or _read_address(cluster.temp_dir)
    pids = set(cluster_pids(cluster.temp_dir, address))
    _signal_all(sorted(pids), signal.SIGTERM)
    _wait_gone(pids, timeout)
    for _ in range(3):
        pids = {p for p in pids if pid_alive(p)} | set(cluster_pids(cluster.temp_dir, address))
        if not pids:
            break
        _signal_all(sorted(pids), signal.SIGKILL)
        _wait_gone(pids, 5.0)
    record = cluster.state_dir / STATE_FILE
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        if json.loads(record.read_text()).get("temp_dir") == str(cluster.temp_dir):
            record.unlink()
    if not keep_logs and cluster.temp_dir.name.startswith("lsw-"):
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)


def cluster_pids(temp_dir: Path, address: str | None = None) -> list[int]:
    """PIDs of the processes that belong to the cluster whose temp dir is ``temp_dir``.

    The Ray client server is the one process that names neither the temp dir nor a parent of the
    cluster (``ray start`` spawns it and exits): it is found by the GCS ``address`` it serves.
    """
    marker = str(temp_dir).rstrip("/") + "/"
    client_marker = f"ray.util.client.server --address={address} " if address else None
    # -ww: unlimited width; without it ps cuts args at $COLUMNS (pytest sets it) and paths vanish.
    out = subprocess.run(
        ["ps", "-ww", "-A", "-o", "pid=,ppid=,args="], capture_output=True, text=True, check=True
    ).stdout
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    me = os.getpid()
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        pid, ppid = int(parts[0]), int(parts[1])
        args = parts[2] if len(parts) == 3 else ""
        children.setdefault(ppid, []).append(pid)
        # matches "--temp-dir=/tmp/lsw-x" as well as "--log_dir=/tmp/lsw-x/session_.../logs"
        owned = marker in args.replace(" ", "/ ") + "/" or (client_marker is not None and client_marker in args + " ")
        if pid != me and owned:
            roots.append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in found or pid == me:
            continue
        found.add(pid)
        stack.extend(children.get(pid, ()))
    return sorted(found)


# --------------------------------------------------------------------------------------------- start


def _start(
    state: Path,
    *,
    num_cpus: int | None,
    num_gpus: int | None,
    trial_driver_slots: int,
    object_store_mb: int,
) -> LocalCluster:
    token_path: Path | None = None
    token: str | None = None
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "disabled":
        token_path = state / TOKEN_FILE
        if not token_path.is_file() or not token_path.read_text().strip():
            _write_private(token_path, secrets.token_hex(32))
        token = token_path.read_text().strip()

    errors: list[str] = []
    for attempt in range(1, _START_ATTEMPTS + 1):
        temp_dir = Path(tempfile.mkdtemp(prefix="lsw-", dir=_short_tmp_root()))
        dashboard_port, client_port, agent_port = _free_ports(3)
        cluster = LocalCluster(
            address="",
            dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            temp_dir=temp_dir,
            auth_token=token,
            started=True,
            state_dir=state,
            token_path=token_path,
            num_cpus=num_cpus,
        )
        cmd = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--port=0",  # a free GCS port chosen by Ray (6379, Ray's default, is Redis's)
            f"--temp-dir={temp_dir}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={client_port}",  # default 10001 would collide between clusters
            # default 52365: a second cluster's dashboard agent could not bind it, and job submission fails
            f"--dashboard-agent-listen-port={agent_port}",
            f"--resources={json.dumps({TRIAL_DRIVER_RESOURCE: trial_driver_slots})}",
            f"--object-store-memory={object_store_mb * 1024 * 1024}",
            "--disable-usage-stats",
        ]
        if num_cpus is not None:
            cmd.append(f"--num-cpus={num_cpus}")
        if num_gpus is not None:
            cmd.append(f"--num-gpus={num_gpus}")
        env = {**os.environ, **CLUSTER_ENV}
        env.pop("RAY_ADDRESS", None)
        if token_path is not None:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path))
            env.pop("RAY_AUTH_TOKEN", None)
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=_START_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            errors.append(f"attempt {attempt}: `ray start` did not return within {_START_TIMEOUT_S:.0f} s: {exc}")
            stop_local_cluster(cluster)
            continue
        address = _read_address(temp_dir)
        if proc.returncode != 0 or address is None:
            errors.append(
                f"attempt {attempt}: `ray start` exited {proc.returncode}"
                f" (address {'found' if address else 'not found'}):\n{_tail(proc.stdout + proc.stderr)}"
            )
            stop_local_cluster(cluster)
            continue
        cluster = LocalCluster(**{**asdict(cluster), "address": address})
        if not _wait_dashboard(cluster):
            errors.append(
                f"attempt {attempt}: dashboard at {cluster.dashboard_url} never answered (port taken?);"
                f" see {temp_dir}/session_latest/logs/dashboard.log"
            )
            stop_local_cluster(cluster)
            continue
        _write_private(state / STATE_FILE, json.dumps(cluster.to_record(), indent=2))
        return cluster
    raise ClusterStartError("could not start a local Ray cluster:\n" + "\n".join(errors))


def _read_address(temp_dir: Path) -> str | None:
    # `ray start` writes the GCS address it bound to here (the same text it prints).
    try:
        text = (temp_dir / "ray_current_cluster").read_text().strip()
    except OSError:
        return None
    return text or None


def _wait_dashboard(cluster: LocalCluster) -> bool:
    deadline = time.monotonic() + _DASHBOARD_TIMEOUT_S
    while time.monotonic() < deadline:
        if _dashboard_status(cluster, timeout=3.0) == 200:
            return True
        time.sleep(0.5)
    return False


def _dashboard_status(cluster: LocalCluster, *, timeout: float) -> int | None:
    request = urllib.request.Request(f"{cluster.dashboard_url}/api/version", headers=auth_headers(cluster))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (a race with other processes is handled by retrying)."""
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] == 6379:  # never Redis's port, even if it were free now
                s.close()
                continue
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _short_tmp_root() -> str:
    # Ray's Unix sockets live under the temp dir and a socket path may hold ~107 bytes; macOS's
    # $TMPDIR (/var/folders/...) is already too long, so prefer /tmp.
    return "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else tempfile.gettempdir()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists" until reaped; treat it as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def describe(cluster: LocalCluster) -> Mapping[str, str]:
    """A short human summary (CLI output)."""
    return {
        "address": cluster.address,
        "dashboard": cluster.dashboard_url,
        "temp_dir": str(cluster.temp_dir),
        "state": str(cluster.state_dir / STATE_FILE),
        "auth": "token" if cluster.auth_token else "disabled",
    }
