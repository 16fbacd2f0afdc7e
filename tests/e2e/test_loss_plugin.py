"""A third-party loss term, end to end: the example package of docs/losses.md installed into a
directory that is on the ``PYTHONPATH`` of the service process and of a private Ray cluster (so of its
job driver and its Train workers), a sweep over the plugin's coefficients submitted over HTTP, its
trials, metrics, report and best configuration read back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lossweep.local_cluster import LocalCluster, ensure_local_cluster, stop_local_cluster
from tests.e2e.test_service_e2e import FINAL, Service, tiny
from tests.fixtures.loss_plugin import PLUGIN_TERM, plugin_env
from tests.fixtures.ray_cluster import TEST_CLUSTER_CPUS, stop_lossweep_jobs

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def plugin_cluster(loss_plugin_site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Ray head started with the plugin on its PYTHONPATH, as a node with the package installed."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = plugin_env(loss_plugin_site)["PYTHONPATH"]
    try:
        cluster = ensure_local_cluster(tmp_path_factory.mktemp("plugin-ray"), num_cpus=TEST_CLUSTER_CPUS)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    try:
        yield cluster
    finally:
        stop_local_cluster(cluster)


@pytest.fixture
def plugin_service(plugin_cluster: LocalCluster, loss_plugin_site: Path, tmp_path: Path) -> Iterator[Service]:
    env = {"PYTHONPATH": plugin_env(loss_plugin_site)["PYTHONPATH"]}
    svc = Service(tmp_path, plugin_cluster, extra_env=env)
    try:
        yield svc
    finally:
        svc.proc.stop()
        stop_lossweep_jobs(plugin_cluster)


def _sweep(**coefficients: Any) -> dict[str, Any]:
    body = tiny("plugin", steps=10)
    body["overrides"] |= {"methods": [PLUGIN_TERM], "coefficients": coefficients}
    return body


def test_a_plugin_term_runs_a_sweep_through_the_service(plugin_service: Service) -> None:
    with plugin_service.client() as c:
        refused = c.post("/v1/sweeps", json=_sweep(hidden_norm_target=-1.0))
        assert refused.status_code == 422 and "hidden_norm_target" in refused.text, refused.text
        unknown = c.post("/v1/sweeps", json=_sweep(hidden_norm_scale=1.0))
        assert unknown.status_code == 422 and "hidden_norm_weight" in unknown.text  # lists the known names

        created = c.post("/v1/sweeps", json=_sweep(hidden_norm_weight=[1e-3, 1e-1], hidden_norm_target=2.0))
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        done = plugin_service.wait(sid, lambda s: s["status"] in FINAL, what="final")
        assert done["status"] == "SUCCEEDED", done

        trials = c.get(f"/v1/sweeps/{sid}/trials").json()["trials"]
        assert {t["method"] for t in trials} == {PLUGIN_TERM}
        assert sorted(t["hidden_norm_weight"] for t in trials) == [1e-3, 1e-1]
        assert all(t["hidden_norm_target"] == 2.0 and t["status"] == "TERMINATED" for t in trials), trials
        # the Train workers computed the penalty: its unweighted value is in every report
        rows = c.get(f"/v1/sweeps/{sid}/trials/{trials[0]['trial_id']}/metrics").json()["rows"]
        assert rows and all(r["term_hidden_norm"] > 0 for r in rows)

        best = c.get(f"/v1/sweeps/{sid}/best-config", params={"format": "json"}).json()
        assert best["method"] == PLUGIN_TERM
        assert best["params"]["hidden_norm_target"] == 2.0 and best["params"]["hidden_norm_weight"] in (1e-3, 1e-1)
        assert best["train_config"]["loss"]["terms"][0]["name"] == PLUGIN_TERM

        html = c.get(f"/v1/sweeps/{sid}/report", params={"format": "html"})
        assert html.status_code == 200 and "hidden-norm" in html.text  # the plugin's label
        report = c.get(f"/v1/sweeps/{sid}/report", params={"format": "json"}).json()
        assert PLUGIN_TERM in report["best"]["per_method"]
