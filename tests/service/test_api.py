"""The REST API on a real uvicorn (loopback port) over SQLite. Ray is unreachable here, which is itself a
case the service must handle: sweeps are accepted and wait QUEUED until Ray answers."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from tests.fixtures.service import LiveService
from tests.service.helpers import demo_spec, fill_sweep_dir, server_dir, with_corpus


def assert_error(response: httpx.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and body["message"] and body["errors"], body
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


# ------------------------------------------------------------------------------------------- health


def test_healthz_and_readyz_say_which_dependency_is_down(live_service: LiveService) -> None:
    assert httpx.get(f"{live_service.url}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{live_service.url}/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body == {"status": "unavailable", "database": "ok", "ray": "unreachable"}  # no address, no error text
    detail = live_service.client("root").get("/readyz").json()  # an admin sees why
    assert detail["ray"].startswith("unreachable") and live_service.settings.ray_address in detail["ray"]
    assert live_service.client("alice").get("/readyz").json() == body


def test_openapi_documents_every_endpoint_with_examples(live_service: LiveService) -> None:
    schema = httpx.get(f"{live_service.url}/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/v1/sweeps",
        "/v1/sweeps/{sweep_id}",
        "/v1/sweeps/{sweep_id}/cancel",
        "/v1/sweeps/{sweep_id}/trials",
        "/v1/sweeps/{sweep_id}/trials/{trial_id}/metrics",
        "/v1/sweeps/{sweep_id}/report",
        "/v1/sweeps/{sweep_id}/best-config",
        "/v1/presets",
        "/v1/presets/{name}",
        "/v1/statuses",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    body = paths["/v1/sweeps"]["post"]["requestBody"]["content"]["application/json"]
    assert {"spec", "preset"} <= set(body["examples"])
    assert "SweepSpec" in schema["components"]["schemas"]


def test_statuses_come_from_the_sweep_dir_contract(live_service: LiveService) -> None:
    from search_spaces.run.sweep_dir import FINAL_SWEEP_STATUSES, FINAL_TRIAL_STATUSES, SWEEP_STATUSES, TRIAL_STATUSES

    body = httpx.get(f"{live_service.url}/v1/statuses").json()
    assert body["trial"] == list(TRIAL_STATUSES) and set(body["trial_final"]) == FINAL_TRIAL_STATUSES
    assert body["sweep"] == ["QUEUED", *SWEEP_STATUSES] and set(body["sweep_final"]) == FINAL_SWEEP_STATUSES


# --------------------------------------------------------------------------------------------- auth


def test_auth_refusals(live_service: LiveService) -> None:
    anon = live_service.client(user=None)
    assert_error(anon.get("/v1/sweeps"), 401, "header.Authorization")
    assert_error(anon.post("/v1/sweeps", json={"preset": "demo"}), 401, "header.Authorization")
    bad = httpx.Client(base_url=live_service.url, headers={"Authorization": "Bearer lsw_not-a-token"})
    response = bad.get("/v1/sweeps")
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"

    alice, bob, root = (live_service.client(u) for u in ("alice", "bob", "root"))
    sweep = alice.post("/v1/sweeps", json={"preset": "demo"}).json()
    assert_error(bob.post(f"/v1/sweeps/{sweep['id']}/cancel"), 404, "path.sweep_id")  # not his to see
    assert alice.get("/v1/me").json() == {"name": "alice", "is_admin": False, "expires_at": None}
    cancelled = root.post(f"/v1/sweeps/{sweep['id']}/cancel")  # admins cancel anyone's sweeps
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLED"


def test_revoked_token_is_refused(live_service: LiveService) -> None:
    from service.auth import revoke_tokens
    from service.db import session_scope

    alice = live_service.client("alice")
    assert alice.get("/v1/sweeps").status_code == 200
    with session_scope(live_service.app.state.lossweep.sessions) as session:
        assert revoke_tokens(session, name="alice") == 1
    assert_error(alice.get("/v1/sweeps"), 401)


def test_public_read_allows_reads_without_a_token_but_not_writes(service_factory) -> None:  # type: ignore[no-untyped-def]
    live = service_factory(public_read=True)
    sweep = live.client("alice").post("/v1/sweeps", json={"preset": "demo"}).json()
    anon = live.client(user=None)
    assert anon.get(f"/v1/sweeps/{sweep['id']}").json()["id"] == sweep["id"]
    assert anon.get("/v1/presets").status_code == 200
    assert_error(anon.post("/v1/sweeps", json={"preset": "demo"}), 401)
    assert_error(anon.post(f"/v1/sweeps/{sweep['id']}/cancel"), 401)
    assert_error(httpx.get(f"{live.url}/v1/sweeps", headers={"Authorization": "Bearer wrong"}), 401)


# --------------------------------------------------------------------------------------- submission


def test_submit_preset_and_full_spec_then_get_and_list(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    response = alice.post("/v1/sweeps", json={"preset": "demo", "name": "my-demo"})
    assert response.status_code == 201, response.text
    sweep = response.json()
    assert sweep["status"] == "QUEUED" and sweep["owner"] == "alice" and sweep["preset"] == "demo"
    assert sweep["name"] == "my-demo" and sweep["id"].startswith("my-demo-")
    assert "waiting for Ray" in sweep["message"]  # Ray is down: accepted, not lost
    assert sweep["num_trials"] >= 1
    assert set(sweep["trial_counts"]) >= {"PENDING", "RUNNING", "TERMINATED", "STOPPED", "DIVERGED", "ERROR"}
    assert sweep["links"]["report"].endswith(f"/v1/sweeps/{sweep['id']}/report?format=html")
    assert sweep["links"]["dashboard"] is None  # no Ray job yet
    assert response.headers["location"].endswith(f"/v1/sweeps/{sweep['id']}")

    spec = demo_spec(alice)
    full = alice.post("/v1/sweeps", json=spec)
    assert full.status_code == 201, full.text
    assert full.json()["spec"] == spec and full.json()["preset"] is None

    got = alice.get(f"/v1/sweeps/{sweep['id']}").json()
    assert got["id"] == sweep["id"] and got["spec"]["name"] == "my-demo"
    listed = alice.get("/v1/sweeps", params={"limit": 1}).json()
    assert listed["total"] == 2 and len(listed["items"]) == 1
    assert listed["items"][0]["id"] == full.json()["id"]  # newest first
    page2 = alice.get("/v1/sweeps", params={"limit": 1, "offset": 1}).json()
    assert page2["items"][0]["id"] == sweep["id"]
    alice.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert [s["id"] for s in alice.get("/v1/sweeps", params={"status": "CANCELLED"}).json()["items"]] == [sweep["id"]]
    assert alice.get("/v1/sweeps", params={"status": ["QUEUED", "CANCELLED"]}).json()["total"] == 2
    assert alice.get("/v1/sweeps", params={"owner": "bob"}).json()["total"] == 0


def test_invalid_submissions_name_the_field(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    assert_error(alice.post("/v1/sweeps", json={"preset": "no-such-preset"}), 422, "body.preset")
    assert_error(alice.post("/v1/sweeps", json={"preset": "demo", "extra": 1}), 422, "body.extra")
    assert_error(alice.post("/v1/sweeps", json={"preset": "demo", "overrides": {"no.such.key": 1}}), 422)
    assert_error(alice.post("/v1/sweeps", json=[1, 2]), 422, "body")
    assert_error(alice.post("/v1/sweeps", content=b"{not json", headers={"content-type": "application/json"}), 422)
    spec = demo_spec(alice)
    spec["methods"] = ["baseline", "not_a_method"]
    body = assert_error(alice.post("/v1/sweeps", json=spec), 422)
    assert any(e["field"].startswith("body.methods") for e in body["errors"]), body
    # The confirm stage: fresh seeds only, top_k >= 1, and something to compare.
    bad_confirms = (
        ({"seeds": [0]}, {}, "body.confirm"),
        ({"seeds": [7], "top_k": 0}, {}, "body.confirm.top_k"),
        ({"seeds": [7]}, {"methods": ["baseline"]}, "body.confirm"),
    )
    for confirm, extra, field in bad_confirms:
        spec = {**demo_spec(alice), **extra, "seeds": [0], "confirm": confirm}
        body = assert_error(alice.post("/v1/sweeps", json=spec), 422)
        assert [e["field"] for e in body["errors"]] == [field], body

    spec = demo_spec(alice)
    spec["divergence"] = {**spec.get("divergence", {}), "l0": 0}
    body = assert_error(alice.post("/v1/sweeps", json=spec), 422)
    assert any(e["field"].startswith("body.divergence.l0") for e in body["errors"]), body
    assert alice.get("/v1/sweeps").json()["total"] == 0  # nothing stored


def test_data_paths_outside_the_roots_are_refused(live_service: LiveService, tmp_path: Path) -> None:
    alice = live_service.client("alice")
    spec = demo_spec(alice)
    root = Path(live_service.settings.resolved_data_roots[0])
    (root / "corpus").mkdir(parents=True)
    (root / "corpus" / "a.txt").write_text("hello " * 100)
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, root / "link.txt")
    for corpus in (
        "text:/etc/passwd",
        f"text:{root}/../secret.txt",
        f"parquet:{root}/corpus/../../x.parquet",
        f"shards:{root}/../prepared",  # prepared token shards follow the same roots
        f"text:{root}/link.txt",  # a symlink out of the root
        "text:relative/path.txt",
    ):
        bad, loc = with_corpus(spec, corpus)
        body = assert_error(alice.post("/v1/sweeps", json=bad), 422)
        assert body["errors"][0]["field"] == "body." + ".".join(map(str, loc)), body
        assert "data roots" in body["message"]
    good, _ = with_corpus(spec, f"text:{root}/corpus")
    assert alice.post("/v1/sweeps", json=good).status_code == 201


# -------------------------------------------------------------------------------------------- limits


def test_body_size_limit(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    big = {"preset": "demo", "overrides": {"name": "x" * (live_service.settings.max_body_bytes + 10)}}
    assert_error(alice.post("/v1/sweeps", json=big), 413, "body")

    def chunks():  # no Content-Length: the streamed body is counted
        for _ in range(64):
            yield b" " * 8192

    assert_error(alice.post("/v1/sweeps", content=chunks(), headers={"content-type": "application/json"}), 413)


def test_trial_limit(service_factory) -> None:  # type: ignore[no-untyped-def]
    live = service_factory(max_trials_per_sweep=1)
    assert live.client("alice").get("/v1/presets/demo").json()["num_trials"] > 1
    body = assert_error(live.client("alice").post("/v1/sweeps", json={"preset": "demo"}), 422, "body")
    assert body["error"] == "too_many_trials" and "LOSSWEEP_MAX_TRIALS_PER_SWEEP" in body["message"]


def test_queue_limit_answers_429(service_factory) -> None:  # type: ignore[no-untyped-def]
    live = service_factory(max_queued_sweeps_per_user=2)
    alice, bob = live.client("alice"), live.client("bob")
    for _ in range(2):
        assert alice.post("/v1/sweeps", json={"preset": "demo"}).status_code == 201
    response = alice.post("/v1/sweeps", json={"preset": "demo"})
    assert_error(response, 429)
    assert int(response.headers["retry-after"]) >= 1
    assert bob.post("/v1/sweeps", json={"preset": "demo"}).status_code == 201  # per user


# ------------------------------------------------------------------------------------- idempotency


def test_idempotency_key(live_service: LiveService) -> None:
    alice, bob = live_service.client("alice"), live_service.client("bob")
    key = {"Idempotency-Key": "run-2026-11-24"}
    first = alice.post("/v1/sweeps", json={"preset": "demo"}, headers=key)
    again = alice.post("/v1/sweeps", json={"preset": "demo"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    # The same JSON written differently is the same body.
    reordered = alice.post("/v1/sweeps", content=b'{"overrides": {}, "preset": "demo"}',
                           headers={**key, "content-type": "application/json"})
    assert reordered.status_code == 409  # {"overrides": {}} was not part of the first body
    body = assert_error(alice.post("/v1/sweeps", json={"preset": "demo", "name": "other"}, headers=key), 409)
    assert first.json()["id"] in body["message"]
    other_user = bob.post("/v1/sweeps", json={"preset": "demo"}, headers=key)  # keys are per user
    assert other_user.status_code == 201 and other_user.json()["id"] != first.json()["id"]
    assert live_service.client("root").get("/v1/sweeps").json()["total"] == 2


# --------------------------------------------------------------------------------------- lifecycle


def test_cancel_of_a_queued_sweep(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    sweep = alice.post("/v1/sweeps", json={"preset": "demo"}).json()
    response = alice.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "CANCELLED" and response.json()["finished_at"]
    assert_error(alice.post(f"/v1/sweeps/{sweep['id']}/cancel"), 409, "path.sweep_id")
    assert_error(alice.post("/v1/sweeps/nope/cancel"), 404, "path.sweep_id")


def test_unknown_things_are_404(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    assert_error(alice.get("/v1/sweeps/does-not-exist"), 404, "path.sweep_id")
    assert_error(alice.get("/v1/sweeps/does-not-exist/report"), 404)
    assert_error(alice.get("/v1/presets/nope"), 404, "path.name")
    assert_error(alice.get("/v1/nothing-here"), 404)
    assert_error(alice.delete("/v1/sweeps"), 405)


# ----------------------------------------------------------------------------------------- results


def test_results_of_a_sweep(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    sweep = alice.post("/v1/sweeps", json={"preset": "demo"}).json()
    sid = sweep["id"]
    assert alice.get(f"/v1/sweeps/{sid}/trials").json() == {"sweep_id": sid, "trials": []}
    assert_error(alice.get(f"/v1/sweeps/{sid}/best-config"), 404, "path.sweep_id")
    assert_error(alice.get(f"/v1/sweeps/{sid}/trials/t0/metrics"), 404, "path.trial_id")

    fill_sweep_dir(server_dir(live_service, sid))
    trials = alice.get(f"/v1/sweeps/{sid}/trials").json()["trials"]
    assert {t["trial_id"] for t in trials} == {"t0", "t1", "t2"}
    assert next(t for t in trials if t["trial_id"] == "t2")["status"] == "DIVERGED"

    as_csv = alice.get(f"/v1/sweeps/{sid}/trials", params={"format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert f'filename="lossweep-{sid}-trials.csv"' in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {r["trial_id"] for r in rows} == {"t0", "t1", "t2"}
    as_parquet = alice.get(f"/v1/sweeps/{sid}/trials", params={"format": "parquet"})
    table = pq.read_table(io.BytesIO(as_parquet.content))
    assert table.num_rows == 3 and "best_val_loss" in table.column_names
    assert_error(alice.get(f"/v1/sweeps/{sid}/trials", params={"format": "xls"}), 422, "query.format")

    metrics = alice.get(f"/v1/sweeps/{sid}/trials/t1/metrics").json()
    steps = [r["step"] for r in metrics["rows"]]
    assert steps == sorted(steps) and len(steps) >= 2 and metrics["last_step"] == steps[-1]
    newer = alice.get(f"/v1/sweeps/{sid}/trials/t1/metrics", params={"since_step": steps[0]}).json()
    assert [r["step"] for r in newer["rows"]] == steps[1:]
    done = alice.get(f"/v1/sweeps/{sid}/trials/t1/metrics", params={"since_step": steps[-1]}).json()
    assert done["rows"] == [] and done["last_step"] == steps[-1]

    best = alice.get(f"/v1/sweeps/{sid}/best-config", params={"format": "json"}).json()
    assert best["trial_id"] == "t1" and best["method"] == "z_loss"  # the diverged trial is excluded
    assert best["params"] == {"lr": 1e-3, "z_loss_weight": 1e-4} and best["val_loss"] == pytest.approx(2.40)
    # Its own interval over the seeds that ran it (one here: no interval, said as null, never invented).
    assert best["stage"] == "search" and best["interval"]["n"] == 1 and best["interval"]["low"] is None
    as_yaml = alice.get(f"/v1/sweeps/{sid}/best-config")
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert as_yaml.text.startswith(f"# Best configuration of sweep {sid}")
    assert "over 1 seed(s) of the search stage" in as_yaml.text
    assert yaml.safe_load(as_yaml.text)  # parses

    for fmt, media in (("json", "application/json"), ("md", "text/markdown"), ("html", "text/html")):
        report = alice.get(f"/v1/sweeps/{sid}/report", params={"format": fmt})
        assert report.status_code == 200, report.text
        assert report.headers["content-type"].startswith(media)
        # The sweep is still QUEUED in the service: the download is named partial.
        assert f'filename="lossweep-{sid}-report-partial.{fmt}"' in report.headers["content-disposition"]
    data = json.loads(alice.get(f"/v1/sweeps/{sid}/report", params={"format": "json"}).content)
    assert "trials.csv" in json.dumps(data)  # the download links reach the report
    html = alice.get(f"/v1/sweeps/{sid}/report").text
    assert "<html" in html.lower() and f"/v1/sweeps/{sid}/trials?format=csv" in html


# ---------------------------------------------------------------------------------------- imports


def test_service_never_imports_torch_and_only_ray_client_imports_ray() -> None:
    import ast
    import subprocess
    import sys

    # Build the app and serve the schema, the presets and a submission, then look for torch.
    code = (
        "import sys, tempfile\n"
        "from fastapi.testclient import TestClient\n"
        "from service.app import create_app\n"
        "from service.settings import Settings\n"
        "s = Settings(_env_file=None, home=tempfile.mkdtemp(), ray_address='http://127.0.0.1:9', public_read=True)\n"
        "with TestClient(create_app(s, run_monitor=False)) as c:\n"
        "    assert c.get('/openapi.json').status_code == 200\n"
        "    assert c.get('/v1/presets').status_code == 200\n"
        "    assert c.get('/v1/presets/demo').status_code == 200\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False", out.stderr
    root = Path(__file__).resolve().parents[2] / "service"
    importers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.add(path.relative_to(root).as_posix())
            assert not any(n == "torch" or n.startswith("torch.") for n in names), path
    assert importers == {"ray_client.py"}
