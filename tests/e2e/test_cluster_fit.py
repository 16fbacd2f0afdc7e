"""A trial that fits on no node of the real Ray cluster is refused at submission (422 naming the field
and the nodes' sizes) instead of waiting for ever."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.ray_cluster import TEST_CLUSTER_CPUS, stop_lossweep_jobs
from tests.service.helpers import demo_spec
from tests.service.test_api import assert_error

pytestmark = [pytest.mark.ray]


def test_a_trial_that_fits_no_node_is_refused(ray_cluster: Any, service_factory) -> None:  # type: ignore[no-untyped-def]
    live = service_factory(ray_address=ray_cluster.dashboard_url, ray_auth_token=ray_cluster.auth_token,
                           run_monitor=False)
    nodes = live.app.state.lossweep.ray.nodes()
    assert nodes and nodes[0]["CPU"] == TEST_CLUSTER_CPUS
    alice = live.client("alice")
    spec = demo_spec(alice)
    too_big = {**spec, "resources": {**spec["resources"], "workers": 1, "cpus_per_worker": 64}}
    body = assert_error(alice.post("/v1/sweeps", json=too_big), 422, "body.resources")
    assert "no node" in body["message"] and f"CPU: {TEST_CLUSTER_CPUS:g}" in body["message"], body
    gpus = {**spec, "resources": {**spec["resources"], "gpus_per_worker": 1}}
    assert_error(alice.post("/v1/sweeps", json=gpus), 422, "body.resources")
    assert alice.get("/v1/sweeps").json()["total"] == 0
    try:
        ok = alice.post("/v1/sweeps", json={"preset": "demo"})
        assert ok.status_code == 201, ok.text
        alice.post(f"/v1/sweeps/{ok.json()['id']}/cancel")
    finally:
        stop_lossweep_jobs(ray_cluster)
