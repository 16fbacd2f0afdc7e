"""Inputs that once got a 5xx (or were stored and then could not be served back): each is now refused
with a 422 naming the field before anything is stored, or answered normally."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.fixtures.service import LiveService
from tests.service.helpers import demo_spec, server_dir
from tests.service.test_api import assert_error


def post_raw(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/v1/sweeps", content=text.encode("utf-8"), headers={"content-type": "application/json"})


def test_lone_surrogate_is_refused_before_storing(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    spec = demo_spec(alice)
    text = json.dumps(spec)[:-1] + ', "description": "bad \\ud800 text"}'
    assert_error(post_raw(alice, text), 422, "body.description")
    assert_error(post_raw(alice, '{"preset": "demo", "overrides": {"description": "\\udfff"}}'), 422,
                 "body.overrides.description")
    listed = alice.get("/v1/sweeps")
    assert listed.status_code == 200 and listed.json()["total"] == 0  # nothing stored


def test_report_of_a_sweep_without_a_sweep_dir(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    queued = alice.post("/v1/sweeps", json={"preset": "demo"}).json()
    cancelled = alice.post("/v1/sweeps", json={"preset": "demo"}).json()
    alice.post(f"/v1/sweeps/{cancelled['id']}/cancel")
    import shutil

    shutil.rmtree(server_dir(live_service, queued["id"]), ignore_errors=True)  # no sweep dir at all (Ray never reached)
    for sweep in (queued, cancelled):
        for fmt in ("json", "md", "html"):
            report = alice.get(f"/v1/sweeps/{sweep['id']}/report", params={"format": fmt})
            assert report.status_code == 200, report.text
        assert not _reports(server_dir(live_service, sweep["id"]))  # rendered in memory: the GET wrote nothing there


def _reports(path: str) -> list[str]:
    from pathlib import Path

    return [p.name for p in Path(path).glob("report.*")]


def test_huge_numbers_through_preset_overrides(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    assert_error(post_raw(alice, '{"preset": "demo", "overrides": {"budget.tokens": 1' + "0" * 400 + "}}"), 422,
                 "body.overrides.budget.tokens")
    spec = demo_spec(alice)
    spec["budget"] = {**spec["budget"], "steps": None, "tokens": 10**400}
    assert_error(post_raw(alice, json.dumps(spec)), 422, "body.budget.tokens")


def test_non_finite_numbers_are_refused_everywhere(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    spec = demo_spec(alice)
    text = json.dumps(spec)[:-1] + ', "resources": {"workers": 1, "cpus_per_worker": Infinity}}'
    assert_error(post_raw(alice, text), 422, "body.resources.cpus_per_worker")
    free_form = '{"preset": "demo", "overrides": {"model.overrides.rope_theta": NaN}}'
    assert_error(post_raw(alice, free_form), 422, "body.overrides.model.overrides.rope_theta")


def test_deeply_nested_overrides(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    deep: Any = 1
    for _ in range(600):
        deep = {"x": deep}
    spec = demo_spec(alice)
    spec["model"] = {**spec["model"], "overrides": {"n_layer": deep}}
    body = assert_error(post_raw(alice, json.dumps(spec)), 422)
    assert body["errors"][0]["field"].startswith("body.model.overrides.n_layer"), body
    assert "nested deeper" in body["message"]
    assert alice.get("/v1/sweeps").json()["total"] == 0


def test_micro_batch_that_does_not_divide_a_workers_batch(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    spec = demo_spec(alice)
    workers = spec["resources"]["workers"]
    per_worker = spec["data"]["batch_size"] // workers
    spec["budget"] = {**spec["budget"], "micro_batch": per_worker + 1}
    body = assert_error(post_raw(alice, json.dumps(spec)), 422)
    assert "budget.micro_batch" in body["message"], body
    spec["budget"]["micro_batch"] = 0
    assert_error(post_raw(alice, json.dumps(spec)), 422, "body.budget.micro_batch")
    assert alice.get("/v1/sweeps").json()["total"] == 0  # nothing stored
