"""The OpenAPI document reads well to generated clients: every operation has a short, stable id, and a
client generated from ``/openapi.json`` with openapi-python-client lists and gets sweeps of a live service."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.service import LiveService

# The ids clients are written against: renaming one breaks them, so this list is the contract.
OPERATION_IDS = {
    ("post", "/v1/sweeps"): "create_sweep",
    ("get", "/v1/sweeps"): "list_sweeps",
    ("get", "/v1/sweeps/{sweep_id}"): "get_sweep",
    ("post", "/v1/sweeps/{sweep_id}/cancel"): "cancel_sweep",
    ("get", "/v1/sweeps/{sweep_id}/trials"): "get_trials",
    ("get", "/v1/sweeps/{sweep_id}/trials/{trial_id}/metrics"): "get_metrics",
    ("get", "/v1/sweeps/{sweep_id}/report"): "get_report",
    ("get", "/v1/sweeps/{sweep_id}/best-config"): "get_best_config",
    ("get", "/v1/presets"): "list_presets",
    ("get", "/v1/presets/{name}"): "get_preset",
    ("get", "/v1/me"): "get_me",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
}


def _operations(schema: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(method, path): op["operationId"] for path, item in schema["paths"].items() for method, op in item.items()}


def test_every_operation_has_a_short_unique_id(live_service: LiveService) -> None:
    ids = _operations(httpx.get(f"{live_service.url}/openapi.json").json())
    for key, expected in OPERATION_IDS.items():
        assert ids.get(key) == expected, (key, ids.get(key))
    assert len(set(ids.values())) == len(ids)  # unique, also for operations added later
    assert all(len(i) <= 30 and "_v1_" not in i for i in ids.values()), ids


@pytest.mark.slow
def test_a_generated_client_lists_and_gets_sweeps(live_service: LiveService, tmp_path: Path) -> None:
    generator = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent)) or shutil.which(
        "openapi-python-client"
    )
    if generator is None:
        pytest.skip("openapi-python-client is not installed (pip install -e '.[dev]')")
    spec = tmp_path / "openapi.json"
    spec.write_text(httpx.get(f"{live_service.url}/openapi.json").text)
    config = tmp_path / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run over generated code
    out = tmp_path / "gen" / "lossweep_client"
    run = subprocess.run(
        [generator, "generate", "--path", str(spec), "--output-path", str(out), "--meta", "none", "--config",
         str(config)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0 and (out / "client.py").is_file(), run.stdout + run.stderr

    with live_service.client("alice") as c:
        created = c.post("/v1/sweeps", json={"preset": "demo", "name": "for-the-client"}).json()
    sys.path.insert(0, str(out.parent))
    try:
        client_module = importlib.import_module("lossweep_client")
        list_sweeps = importlib.import_module("lossweep_client.api.sweeps.list_sweeps")
        get_sweep = importlib.import_module("lossweep_client.api.sweeps.get_sweep")
        client = client_module.AuthenticatedClient(base_url=live_service.url, token=live_service.tokens["alice"])
        listed = list_sweeps.sync(client=client, owner="alice")
        assert listed.total == 1 and [s.id for s in listed.items] == [created["id"]]
        assert listed.items[0].name == "for-the-client" and listed.items[0].owner == "alice"
        got = get_sweep.sync(sweep_id=created["id"], client=client)
        assert got.id == created["id"] and got.status == "QUEUED" and got.can_cancel is True
        assert got.spec.to_dict()["name"] == "for-the-client"
        anonymous = client_module.Client(base_url=live_service.url)
        assert get_sweep.sync_detailed(sweep_id=created["id"], client=anonymous).status_code == 401
    finally:
        sys.path.remove(str(out.parent))
        for name in [m for m in sys.modules if m == "lossweep_client" or m.startswith("lossweep_client.")]:
            del sys.modules[name]
