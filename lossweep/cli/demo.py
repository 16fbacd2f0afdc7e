"""``lossweep demo``: the whole product in one command.

Ensures a local Ray head with its dashboard, starts the REST service in the background if none runs
(recorded in ``$LOSSWEEP_HOME/service.json``), creates a local admin token (``$LOSSWEEP_HOME/api_token``),
submits the ``demo`` preset over REST, shows progress, downloads the HTML report and prints its path
and the Ray dashboard URL. Running it again reuses the cluster, the service and the token.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from lossweep.cli.client import SERVICE_RECORD, TOKEN_FILE, Client, ServiceError, format_sweep, state_dir
from lossweep.local_cluster import pid_alive
from search_spaces.run.sweep_dir import FINAL_SWEEP_STATUSES, SweepStatus

SERVICE_LOG = "service.log"


def _free_port(preferred: int) -> int:
    import socket

    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen = int(s.getsockname()[1])
            if chosen != 6379:
                return chosen
    raise RuntimeError("no free port")


def _get(url: str, path: str, timeout: float = 3.0) -> Any | None:
    import httpx

    try:
        response = httpx.get(url + path, timeout=timeout)
    except httpx.HTTPError:
        return None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def _is_our_service(pid: int) -> bool:
    """Whether ``pid`` still runs the service ``ensure_service`` started (not a process that reused the id)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)  # no /proc: trust the record
    return b"lossweep.cli.main" in cmdline and b"serve" in cmdline


def stop_service(home: Path, *, timeout: float = 10.0) -> str | None:
    """Stops the service ``ensure_service`` started in ``home`` (SIGTERM, then SIGKILL after ``timeout``)
    and drops its record; returns its URL, or None when none was recorded."""
    record_path = home / SERVICE_RECORD
    try:
        record = json.loads(record_path.read_text())
        url, pid = str(record["url"]), int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid_alive(pid) and _is_our_service(pid):
        os.kill(pid, 15)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            os.kill(pid, 9)
    record_path.unlink(missing_ok=True)
    return url


def ensure_service(home: Path, cluster: Any, preferred_port: int) -> tuple[str, bool]:
    """The URL of a running local service attached to ``cluster``; starts one when needed."""
    record_path = home / SERVICE_RECORD
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        record = json.loads(record_path.read_text())
        url, pid = str(record["url"]), int(record["pid"])
        ready = _get(url, "/readyz")
        if ready is not None and ready[0] == 200 and record.get("ray") == cluster.dashboard_url:
            return url, False
        # Our earlier service is gone, or talks to a Ray that no longer runs: replace it.
        if ready is not None and pid_alive(pid):
            os.kill(pid, 15)
            for _ in range(50):
                if not pid_alive(pid):
                    break
                time.sleep(0.2)
    port = _free_port(preferred_port)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LOSSWEEP_HOME": str(home), "LOSSWEEP_RAY_ADDRESS": cluster.dashboard_url,
           "LOSSWEEP_DASHBOARD_URL": cluster.dashboard_url}
    if cluster.auth_token:
        env["LOSSWEEP_RAY_AUTH_TOKEN"] = cluster.auth_token
    log = open(home / SERVICE_LOG, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossweep.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"the service exited with {proc.returncode}; see {home / SERVICE_LOG}")
        answer = _get(url, "/healthz")
        if answer is not None and answer[0] == 200:
            break
        time.sleep(0.3)
    else:
        raise ServiceError(f"the service did not start within 60 s; see {home / SERVICE_LOG}")
    record_path.write_text(json.dumps({"url": url, "pid": proc.pid, "port": port, "ray": cluster.dashboard_url}))
    return url, True


def ensure_token(home: Path, url: str) -> str:
    """A token the local service accepts: the recorded one, else a new local admin token."""
    import getpass

    from service.auth import create_token
    from service.db import init_db, make_engine, make_sessionmaker, session_scope
    from service.settings import Settings

    path = home / TOKEN_FILE
    if path.is_file():
        token = path.read_text().strip()
        with contextlib.suppress(ServiceError):
            Client(url, token).json("GET", "/v1/me")
            return token
    engine = make_engine(Settings(home=home).resolved_database_url)
    init_db(engine)
    with session_scope(make_sessionmaker(engine)) as session:
        _, token = create_token(session, getpass.getuser() or "demo", admin=True)
    engine.dispose()
    # Created 0600 (not chmod-ed after writing): no moment where another user can read the token.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def demo(
    port: Annotated[int, typer.Option(help="Port for the service when it has to be started.")] = 8000,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override KEY=VALUE of the demo preset.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write the HTML report.")] = None,
) -> None:
    """Run the demo sweep end to end: local Ray + service + REST submission + HTML report."""
    from lossweep.cli.client import parse_sets
    from lossweep.local_cluster import ensure_local_cluster
    from service.routes.ui import page_url

    home = state_dir()
    home.mkdir(parents=True, exist_ok=True)
    try:
        typer.echo("Ray: looking for the local cluster…")
        cluster = ensure_local_cluster(home)
        typer.echo(f"Ray: {'started a local head' if cluster.started else 'reusing the local head'}; "
                   f"dashboard {cluster.dashboard_url}")
        url, started = ensure_service(home, cluster, port)
        typer.echo(f"service: {'started' if started else 'reusing'} {url} (API docs {url}/docs, log "
                   f"{home / SERVICE_LOG})")
        token = ensure_token(home, url)
        client = Client(url, token)
        me = client.json("GET", "/v1/me")
        running = client.json("GET", "/v1/sweeps", params={"owner": me["name"], "status": ["QUEUED", "RUNNING"]})
        follow = next((s for s in running["items"] if s.get("preset") == "demo"), None) if not set_ else None
        if follow is not None:
            sweep = follow
            typer.echo(f"sweep: following the demo sweep already running, {sweep['id']}")
        else:
            sweep = client.json("POST", "/v1/sweeps", json={"preset": "demo", "overrides": parse_sets(set_ or [])})
            n = sweep['num_trials']
            typer.echo(f"sweep: submitted {sweep['id']} ({n} trial{'' if n == 1 else 's'})")
        typer.echo(f"watch it: {page_url(url, sweep['id'])} (token in {home / TOKEN_FILE})")
        sweep = _follow(client, sweep)
        report = output or home / "reports" / f"{sweep['id']}.html"
        report.parent.mkdir(parents=True, exist_ok=True)
        response = client.request("GET", f"/v1/sweeps/{sweep['id']}/report", params={"format": "html"})
        report.write_bytes(response.content)
    except (ServiceError, RuntimeError, OSError) as exc:
        typer.echo(f"lossweep demo: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        typer.echo("\nlossweep demo: stopped following; the sweep keeps running (see `lossweep status`)", err=True)
        raise typer.Exit(130) from None
    typer.echo("")
    typer.echo(f"sweep {sweep['id']} {sweep['status']}")
    best = sweep.get("best") or {}
    if best.get("val_loss") is not None:
        typer.echo(f"best: {best.get('method')} with validation CE {best['val_loss']:.4f} {best.get('params') or ''}")
    typer.echo(f"report: {report.resolve()}")
    typer.echo(f"Ray dashboard: {cluster.dashboard_url}")
    if (sweep.get("links") or {}).get("dashboard"):
        typer.echo(f"Ray job: {sweep['links']['dashboard']}")
    typer.echo(f"more: lossweep status {sweep['id']}   (service {url}, token in {home / TOKEN_FILE})")
    typer.echo(f"web page: {page_url(url, sweep['id'])}")
    if sweep["status"] != SweepStatus.SUCCEEDED:
        raise typer.Exit(1)


def _follow(client: Client, sweep: dict[str, Any], interval: float = 2.0, quiet_s: float = 30.0) -> dict[str, Any]:
    last, last_at = "", 0.0
    while True:
        line = format_sweep(sweep)
        # A new line when trials move; a changed estimate alone is worth one every ``quiet_s``.
        if line != last or time.monotonic() - last_at >= quiet_s:
            eta = sweep.get("eta_s")
            shown = line + (f"  eta {eta:.0f}s" if eta and sweep["status"] == "RUNNING" else "")
            typer.echo(f"  [{time.strftime('%H:%M:%S')}] {shown}")
            last, last_at = line, time.monotonic()
        if sweep["status"] in FINAL_SWEEP_STATUSES:
            return sweep
        time.sleep(interval)
        sweep = client.json("GET", f"/v1/sweeps/{sweep['id']}")


def register(app: typer.Typer) -> None:
    """Adds ``demo`` to the ``lossweep`` app."""
    app.command("demo")(demo)
