"""REST service latency: p50/p99 of ``GET /v1/sweeps/{id}`` and ``POST /v1/sweeps`` under 50 concurrent
clients on loopback, with 100 sweeps stored (SQLite by default, any ``--database-url``).

The service runs as its own ``lossweep serve`` process (uvicorn), the load generator here (aiohttp,
one event loop): on a small machine they share the cores, which the figures include.

Two load shapes:
- closed loop: 50 clients each sending the next request as soon as the previous answer arrives
  (the service's saturation latency);
- paced: 50 clients each sending one request every ``--interval`` seconds (dashboards polling).

POST: by default the submitting user is at the per-user concurrency limit, so a submission is
validated, stored and queued but no Ray job is started in the request (``--ray`` measures the Jobs API
submit call itself against a local Ray instead, with a few real submissions).

    python benchmarks/bench_service.py [--requests 3000] [--clients 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(name: str, latencies: list[float], wall: float, errors: int) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies]
    return {
        "name": name,
        "requests": len(ms),
        "errors": errors,
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "throughput_rps": round(len(ms) / wall, 1),
    }


async def closed_loop(url: str, token: str, make: Any, total: int, clients: int) -> tuple[list[float], float, int]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    remaining = total
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                method, path, body = make()
                t0 = time.perf_counter()
                async with session.request(method, path, data=body) as response:
                    await response.read()
                    if response.status >= 400:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    return latencies, wall, errors


async def paced(url: str, token: str, make: Any, duration: float, clients: int, interval: float
                ) -> tuple[list[float], float, int]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(url, headers=headers, connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client(offset: float) -> None:
            nonlocal errors
            await asyncio.sleep(offset)
            end = time.perf_counter() + duration
            while time.perf_counter() < end:
                method, path, body = make()
                t0 = time.perf_counter()
                async with session.request(method, path, data=body) as response:
                    await response.read()
                    if response.status >= 400:
                        errors += 1
                elapsed = time.perf_counter() - t0
                latencies.append(elapsed)
                await asyncio.sleep(max(0.0, interval - elapsed))

        start = time.perf_counter()
        await asyncio.gather(*(client(i * interval / clients) for i in range(clients)))
        wall = time.perf_counter() - start
    return latencies, wall, errors


def start_service(home: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "LOSSWEEP_HOME": str(home), **env_extra}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossweep.cli.main", "serve", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=open(home / "service.log", "wb"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"service did not start; see {home / 'service.log'}")


def make_token(home: Path, env_extra: dict[str, str], name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "lossweep.cli.main", "token", "create", name],
        env={**os.environ, "LOSSWEEP_HOME": str(home), **env_extra}, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def ray_submit_latency(n: int) -> dict[str, Any]:
    """The Jobs API submit call alone, against a private local Ray (trivial entrypoint)."""
    from lossweep.local_cluster import ensure_local_cluster, stop_local_cluster
    from service.ray_client import RayJobs

    state = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    cluster = ensure_local_cluster(state, num_cpus=1)
    try:
        jobs = RayJobs(cluster.dashboard_url, auth_token=cluster.auth_token)
        jobs.ping()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            jobs.submit(submission_id=f"bench-{os.getpid()}-{i}", entrypoint="true", metadata={"bench": "1"})
            times.append(time.perf_counter() - t0)
        ms = [t * 1000 for t in times]
        return {"name": "Ray Jobs submit (local head)", "requests": n, "p50_ms": round(percentile(ms, 50), 1),
                "max_ms": round(max(ms), 1)}
    finally:
        stop_local_cluster(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sweeps", type=int, default=100, help="sweeps stored before measuring")
    parser.add_argument("--requests", type=int, default=3000, help="GET requests in the closed loop")
    parser.add_argument("--posts", type=int, default=1000, help="POST requests in the closed loop")
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a paced client's requests")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--ray", action="store_true", help="also time real Jobs API submissions")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    home = Path(tempfile.mkdtemp(prefix="bench-service-"))
    env = {
        # Ray is not needed: the bench user is kept at its concurrency limit, so POSTs queue.
        "LOSSWEEP_RAY_ADDRESS": f"http://127.0.0.1:{free_port()}",
        "LOSSWEEP_MAX_QUEUED_SWEEPS_PER_USER": "1000000",
        "LOSSWEEP_POLL_INTERVAL_S": "2",
    }
    if args.database_url:
        env["LOSSWEEP_DATABASE_URL"] = args.database_url
    token = make_token(home, env, "bench")
    proc, url = start_service(home, env)
    results: list[dict[str, Any]] = []
    try:
        # The bench user "runs" one sweep already (a row marked submitted), so new ones wait QUEUED.
        from service.db import make_engine, make_sessionmaker, session_scope
        from service.models import Sweep
        from service.settings import Settings

        settings = Settings(home=home, database_url=args.database_url)
        engine = make_engine(settings.resolved_database_url)
        body = json.dumps({"preset": "demo"}).encode()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            first = client.post("/v1/sweeps", content=body, headers={"Content-Type": "application/json"}).json()
            with session_scope(make_sessionmaker(engine)) as session:
                row = session.get(Sweep, first["id"])
                assert row is not None
                row.status, row.ray_submission_id = "RUNNING", "lossweep-bench-placeholder"
            ids = [first["id"]]
            for _ in range(args.sweeps - 1):
                r = client.post("/v1/sweeps", content=body, headers={"Content-Type": "application/json"})
                r.raise_for_status()
                ids.append(r.json()["id"])
        engine.dispose()

        def get() -> tuple[str, str, None]:
            return "GET", f"/v1/sweeps/{random.choice(ids)}", None

        def post() -> tuple[str, str, bytes]:
            return "POST", "/v1/sweeps", body

        asyncio.run(closed_loop(url, token, get, 300, args.clients))  # warm-up
        lat, wall, err = asyncio.run(closed_loop(url, token, get, args.requests, args.clients))
        results.append(summary(f"GET /v1/sweeps/{{id}} closed loop, {args.clients} clients", lat, wall, err))
        lat, wall, err = asyncio.run(paced(url, token, get, args.paced_seconds, args.clients, args.interval))
        results.append(summary(f"GET /v1/sweeps/{{id}} paced, {args.clients} clients x 1 req/{args.interval:g}s",
                               lat, wall, err))
        lat, wall, err = asyncio.run(closed_loop(url, token, post, args.posts, args.clients))
        results.append(summary(f"POST /v1/sweeps (queued) closed loop, {args.clients} clients", lat, wall, err))
        lat, wall, err = asyncio.run(paced(url, token, post, args.paced_seconds, args.clients, args.interval))
        results.append(summary(f"POST /v1/sweeps (queued) paced, {args.clients} clients x 1 req/{args.interval:g}s",
                               lat, wall, err))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    if args.ray:
        results.append(ray_submit_latency(10))
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {load}"
    print(f"machine: {machine}; database: {args.database_url or 'SQLite (WAL)'}; {args.sweeps}+ sweeps stored")
    print(f"{'case':<72} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}")
    for r in results:
        print(f"{r['name']:<72} {r.get('p50_ms', ''):>8} {r.get('p99_ms', r.get('max_ms', '')):>8} "
              f"{r.get('throughput_rps', ''):>8} {r.get('errors', ''):>6}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
