"""Trial and sweep metrics reach the Ray node's Prometheus endpoint during a real sweep, with the
right names and tags; a real Prometheus on ``deploy/prometheus/prometheus.yml`` answers every query
of the Grafana board.

A real tiny sweep (the driver, ``python -m search_spaces.run.job``, in a subprocess; two μ-centering
trials on the session's local Ray, one at a learning rate that diverges at once) runs while the test
scrapes every node's metrics endpoint over HTTP (ports from ``ray.nodes()``, the targets Ray writes
into its Prometheus service-discovery file). A node's agent serves a series after a flush interval of
a few seconds and keeps it about 20 s after its process exits, so every scrape is kept.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lossweep.local_cluster import LocalCluster
from search_spaces.run.ray_metrics import SWEEP_TRIALS, TRIAL_STATUSES
from search_spaces.run.results import read_trials
from tests.fixtures.sweeps import driver_env, run_driver
from trainables.train.ray_metrics import DIVERGED_TOTAL, TRIAL_METRICS, VAL_LOSS

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "lossweep-dashboard.json"
SCRAPE_TIMEOUT_S = 45.0
METHOD = "mu_centering"
TINY_SWEEP: dict[str, Any] = {
    "name": "metrics-e2e",
    "model": {"preset": "tiny"},
    "data": {"corpus": "stdlib", "seq_len": 32, "batch_size": 4, "eval_tokens": 32, "test_tokens": 64},
    "budget": {"steps": 12, "warmup_steps": 2, "eval_interval": 4},
    "methods": [METHOD],
    "lr": [3e-3, 1e3],  # the second diverges at its first report
    "search": {"algorithm": "grid"},
    "resources": {"workers": 1, "cpus_per_worker": 0.5},
    "max_concurrent_trials": 2,
}
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metrics_urls(ray_module: Any) -> list[str]:
    """Every live node's Prometheus endpoint."""
    return [
        f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for node in ray_module.nodes()
        if node.get("Alive") and node.get("MetricsExportPort")
    ]


def scrape(urls: list[str]) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every labelled sample the endpoints serve now."""
    samples: list[tuple[str, dict[str, str], float]] = []
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match:
                labels = dict(_LABEL.findall(match["labels"]))
                samples.append((match["name"], labels, float(match["value"])))
    return samples


def _mine(samples: list[Any], name: str, **tags: str) -> list[tuple[dict[str, str], float]]:
    return [
        (labels, value)
        for n, labels, value in samples
        if n == name and all(labels.get(k) == v for k, v in tags.items())
    ]


@pytest.fixture(scope="module")
def prometheus(ray_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A real Prometheus on a loopback port running ``deploy/prometheus/prometheus.yml`` with the session
    cluster's discovery file linked into ``targets/`` (as docs/monitoring.md says); None when no
    ``prometheus`` binary is installed (Debian: ``apt-get install prometheus``)."""
    binary = shutil.which("prometheus")
    if binary is None:
        yield None
        return
    work = tmp_path_factory.mktemp("prometheus")
    shutil.copy(PROMETHEUS_CONFIG, work / "prometheus.yml")
    (work / "targets").mkdir()
    (work / "targets" / "lossweep-local.json").symlink_to(
        Path(ray_cluster.temp_dir) / "prom_metrics_service_discovery.json"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(work / "prometheus.log", "w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prometheus did not start: {(work / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _prometheus_query(url: str, expr: str, *, instant: bool = True) -> list[dict[str, Any]]:
    """An instant query, or (``instant=False``, as Grafana runs a time-series panel) a range query over
    the last 10 minutes."""
    now = time.time()
    if instant:
        endpoint, params = "query", {"query": expr}
    else:
        endpoint, params = "query_range", {"query": expr, "start": now - 600, "end": now, "step": 2}
    with urllib.request.urlopen(f"{url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}", timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def check_dashboard_queries(url: str, sweep: str, trials: set[str], diverged: int) -> None:
    """Every query of the Grafana board, with its variables set to ``sweep`` as the service's link
    sets them, answers with data from this sweep once Prometheus has scraped the node."""
    board = json.loads(DASHBOARD.read_text())
    targets = {
        (panel["title"], target["refId"]): (
            target["expr"].replace("$sweep", sweep).replace("$__range", "10m"),
            bool(target.get("instant")),
        )
        for panel in board["panels"]
        for target in panel["targets"]
    }
    missing = dict(targets)
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while missing and time.monotonic() < deadline:
        for key, (expr, instant) in list(missing.items()):
            if _prometheus_query(url, expr, instant=instant):
                del missing[key]
        if missing:
            time.sleep(2.0)
    assert not missing, f"board queries without data after {SCRAPE_TIMEOUT_S:.0f} s: {sorted(missing)}"
    expr, _ = targets[("Validation CE per trial", "A")]
    per_trial = _prometheus_query(url, expr, instant=False)
    assert sorted(r["metric"]["trial"] for r in per_trial) == sorted(trials)
    assert all(r["metric"] == {"sweep": sweep, "trial": r["metric"]["trial"], "method": METHOD} for r in per_trial)
    expr, _ = targets[("Diverged trials, per method", "A")]
    [count] = _prometheus_query(url, expr)
    assert count["metric"] == {"method": METHOD} and float(count["value"][1]) == diverged


def test_prometheus_discovery_file_lists_the_metrics_endpoints(ray_cluster: LocalCluster, ray_connected: Any) -> None:
    # Ray's dashboard rewrites the file every 5 s (in the session dir, linked from the temp dir).
    discovery = Path(ray_cluster.temp_dir) / "prom_metrics_service_discovery.json"
    endpoints = {url.split("//", 1)[1].split("/", 1)[0] for url in metrics_urls(ray_connected)}
    assert endpoints
    targets: set[str] = set()
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and not endpoints <= targets:
        time.sleep(1.0)
        groups = json.loads(discovery.read_text()) if discovery.exists() else []
        targets = {t for group in groups for t in group["targets"]}
    assert endpoints <= targets, f"{discovery} lists {sorted(targets)}, not the nodes' {sorted(endpoints)}"


class Seen:
    """Every labelled sample of the lossweep series scraped so far (latest value per series)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

    def scrape(self) -> None:
        for name, labels, value in scrape(self.urls):
            if "lossweep" in name:
                self.values[(name, frozenset(labels.items()))] = value

    def series(self, name: str, **tags: str) -> list[tuple[dict[str, str], float]]:
        found = [(dict(labels), v) for (n, labels), v in self.values.items() if n == name]
        return [(labels, v) for labels, v in found if all(labels.get(k) == t for k, t in tags.items())]


def test_a_real_sweep_exports_trial_and_sweep_series_with_sweep_trial_method_tags(
    ray_cluster: LocalCluster, ray_connected: Any, prometheus: str | None, tmp_path: Path
) -> None:
    sweep = f"mtest-{uuid.uuid4().hex[:6]}"  # the sweep id is the sweep dir's name
    sweep_dir = tmp_path / sweep
    result: dict[str, Any] = {}
    driver = threading.Thread(
        target=lambda: result.update(proc=run_driver(TINY_SWEEP, sweep_dir, env=driver_env(ray_cluster))), daemon=True
    )
    driver.start()
    seen = Seen(metrics_urls(ray_connected))

    def complete() -> bool:
        trials = {labels["trial"] for labels, _ in seen.series(VAL_LOSS.prometheus_name, sweep=sweep)}
        statuses = {labels["status"] for labels, _ in seen.series(SWEEP_TRIALS.prometheus_name, sweep=sweep)}
        diverged = seen.series(DIVERGED_TOTAL.prometheus_name, sweep=sweep)
        return len(trials) == 2 and statuses == set(TRIAL_STATUSES) and bool(diverged)

    deadline = time.monotonic() + 240.0  # a bound for a loaded machine; about 40 s on a quiet one
    while time.monotonic() < deadline and not (complete() and not driver.is_alive()):
        seen.scrape()
        time.sleep(1.0)
    driver.join(timeout=30.0)
    if "proc" not in result:
        progress = sweep_dir / "progress.json"
        pytest.fail(
            f"the sweep did not end in time; {progress.read_text() if progress.exists() else 'no progress.json'}"
        )
    proc = result["proc"]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    mine = sorted({(n, dict(lb).get("trial", "")) for n, lb in seen.values if dict(lb).get("sweep") == sweep})
    assert complete(), f"series of {sweep} seen: {mine}"

    trials = read_trials(sweep_dir).set_index("trial_id")
    assert sorted(trials["status"]) == ["DIVERGED", "TERMINATED"]
    [diverged_id] = trials.index[trials["status"] == "DIVERGED"]
    # Trial series carry the sweep id, the Tune trial id and the method, whatever Ray adds besides.
    for spec in TRIAL_METRICS:
        if spec.kind == "gauge" and spec.row_key in ("val_loss", "tokens", "step", "lr", "diverged"):
            tagged = seen.series(spec.prometheus_name, sweep=sweep)
            assert {labels["trial"] for labels, _ in tagged} == set(trials.index), spec.prometheus_name
            assert {labels["method"] for labels, _ in tagged} == {METHOD}, spec.prometheus_name
    [(labels, count)] = seen.series(DIVERGED_TOTAL.prometheus_name, sweep=sweep)
    assert (labels["trial"], labels["method"], count) == (diverged_id, METHOD, 1.0)
    assert labels["cause"] == trials.loc[diverged_id, "diverged_cause"]
    # The healthy trial's gauges end on its last report, as recorded in trials.parquet.
    [healthy_id] = trials.index[trials["status"] == "TERMINATED"]
    [(_, val_loss)] = seen.series(VAL_LOSS.prometheus_name, sweep=sweep, trial=healthy_id)
    assert val_loss == pytest.approx(trials.loc[healthy_id, "final_val_loss"])
    # Trials per status from the driver: every status present, the two trials counted.
    counts = {labels["status"]: v for labels, v in seen.series(SWEEP_TRIALS.prometheus_name, sweep=sweep)}
    assert set(counts) == set(TRIAL_STATUSES) and sum(counts.values()) == 2

    # One progress line per report, in the trial worker's log, where the dashboard's log viewer reads it.
    logs = Path(ray_cluster.temp_dir) / "session_latest" / "logs"
    text = "\n".join(f.read_text(errors="replace") for f in logs.glob("worker-*.out"))
    healthy = [ln for ln in text.splitlines() if f"[lossweep {sweep}-{healthy_id}] step " in ln]
    assert healthy and all(ln.endswith("diverged no") for ln in healthy), healthy
    assert healthy[-1].split(" step ", 1)[1].startswith("12/12 tokens 1.5k val_ce ")
    broken = [ln for ln in text.splitlines() if f"[lossweep {sweep}-{diverged_id}] step " in ln]
    assert broken and "diverged at step" in broken[-1], broken

    if prometheus is not None:
        check_dashboard_queries(prometheus, sweep, set(trials.index), diverged=1)
