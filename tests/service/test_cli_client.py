"""The CLI against a live service: ``lossweep token create``, ``submit``, ``status``, ``cancel``, ``report``,
and the one-line error when no service answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lossweep.cli.main import app
from tests.fixtures.service import LiveService, free_port
from tests.service.helpers import fill_sweep_dir, server_dir


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LOSSWEEP_HOME", str(tmp_path / "cli-home"))
    monkeypatch.delenv("LOSSWEEP_URL", raising=False)
    monkeypatch.delenv("LOSSWEEP_TOKEN", raising=False)
    runner = CliRunner()

    def invoke(*args: str, token: str | None = None):  # type: ignore[no-untyped-def]
        env = {"LOSSWEEP_TOKEN": token} if token else {}
        return runner.invoke(app, list(args), env=env)

    return invoke


def test_no_service_is_one_clear_line(run) -> None:  # type: ignore[no-untyped-def]
    url = f"http://127.0.0.1:{free_port()}"
    result = run("status", "--url", url)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"no lossweep service at {url}" in lines[0]


def test_token_create_prints_a_token_the_service_accepts(run, live_service: LiveService) -> None:  # type: ignore[no-untyped-def]
    import os

    os.environ["LOSSWEEP_HOME"] = str(live_service.settings.home)  # the service's database
    result = run("token", "create", "carol")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("lsw_")
    ok = run("status", "--url", live_service.url, token=token)
    assert ok.exit_code == 0, ok.output
    refused = run("status", "--url", live_service.url, token="lsw_wrong")
    assert refused.exit_code == 1 and "401" in refused.output and "LOSSWEEP_TOKEN" in refused.output


def test_submit_status_cancel_report(run, live_service: LiveService, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token, url = live_service.tokens["alice"], live_service.url
    result = run("submit", "demo", "--name", "from-cli", "--url", url, token=token)
    assert result.exit_code == 0, result.output
    sweep_id = result.output.split()[1]
    assert sweep_id.startswith("from-cli-")
    bad = run("submit", "no-such-preset", "--url", url, token=token)
    assert bad.exit_code == 1 and "body.preset" in bad.output

    status = run("status", sweep_id, "--url", url, token=token)
    assert status.exit_code == 0 and "QUEUED" in status.output and "report" in status.output
    listing = run("status", "--url", url, token=token)
    assert sweep_id in listing.output

    sweep = live_service.client("alice").get(f"/v1/sweeps/{sweep_id}").json()
    fill_sweep_dir(server_dir(live_service, sweep["id"]))
    out = tmp_path / "r.html"
    report = run("report", sweep_id, "--format", "html", "-o", str(out), "--url", url, token=token)
    assert report.exit_code == 0, report.output
    assert out.read_text().lower().lstrip().startswith("<!doctype html")

    cancel = run("cancel", sweep_id, "--url", url, token=token)
    assert cancel.exit_code == 0 and "cancelled" in cancel.output
    again = run("cancel", sweep_id, "--url", url, token=token)
    assert again.exit_code == 1 and "409" in again.output


def test_submit_a_spec_file_with_sets(run, live_service: LiveService, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    spec = live_service.client("alice").get("/v1/presets/demo").json()["spec"]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run("submit", str(path), "--set", "name=from-file", "--url", live_service.url, "--json",
                 token=live_service.tokens["alice"])
    assert result.exit_code == 0, result.output
    assert '"name": "from-file"' in result.output
    missing = run("submit", str(tmp_path / "nope.yaml"), "--url", live_service.url, token=live_service.tokens["alice"])
    assert missing.exit_code == 1 and "cannot read" in missing.output
