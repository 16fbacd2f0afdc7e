"""Smaller holes: links never follow a forged Host header, the report cache follows the sweep's files,
no process-wide umask changes, private files created private, safe download names."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

from lossweep.cli.client import safe_filename
from tests.fixtures.service import LiveService
from tests.search_spaces.synthetic_sweep import trial, write_sweep
from tests.service.helpers import fill_sweep_dir, server_dir


def test_links_ignore_an_untrusted_host_header(live_service: LiveService, service_factory) -> None:  # type: ignore[no-untyped-def]
    alice = live_service.client("alice")
    sweep = alice.post("/v1/sweeps", json={"preset": "demo"}, headers={"Host": "evil.example"})
    assert sweep.status_code == 201
    assert "evil.example" not in sweep.text and "evil.example" not in sweep.headers["location"]
    assert sweep.json()["links"]["self"] == f"/v1/sweeps/{sweep.json()['id']}"  # relative
    trusted = alice.get(f"/v1/sweeps/{sweep.json()['id']}")  # Host: 127.0.0.1:<port>
    assert trusted.json()["links"]["self"] == f"{live_service.url}/v1/sweeps/{sweep.json()['id']}"

    configured = service_factory(public_url="https://lossweep.example.org")
    got = configured.client("alice").post("/v1/sweeps", json={"preset": "demo"}, headers={"Host": "evil.example"})
    assert got.json()["links"]["self"].startswith("https://lossweep.example.org/v1/sweeps/")


def test_report_cache_follows_the_files_not_the_host(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    sweep = alice.post("/v1/sweeps", json={"preset": "demo"}).json()
    alice.post(f"/v1/sweeps/{sweep['id']}/cancel")  # final: its report used to be cached for ever
    sweep_dir = server_dir(live_service, sweep["id"])
    fill_sweep_dir(sweep_dir)
    first = alice.get(f"/v1/sweeps/{sweep['id']}/report", params={"format": "json"}, headers={"Host": "evil.example"})
    assert first.status_code == 200 and "evil.example" not in first.text
    assert "t1" in first.text and "t9" not in first.text
    write_sweep(Path(sweep_dir), [trial("t9", "baseline", 1e-3, 2.2)], status="CANCELLED", name="filled")
    second = alice.get(f"/v1/sweeps/{sweep['id']}/report", params={"format": "json"})
    assert "t9" in second.text  # the files changed: rendered again


def test_atomic_writes_never_touch_the_process_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainables.data.atomic_file import write_atomic

    def forbidden(mask: int) -> int:
        raise AssertionError("os.umask changes the mask of every thread of the process")

    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", forbidden)
        path = write_atomic(tmp_path / "report.html", b"x")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_database_file_is_private(live_service: LiveService) -> None:
    db = Path(live_service.settings.home) / "lossweep.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for side in db.parent.glob("lossweep.db-*"):  # WAL and shared-memory files
        assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0, side


def test_demo_token_file_is_created_private(tmp_path: Path) -> None:
    from lossweep.cli.demo import TOKEN_FILE, ensure_token

    old = os.umask(0)  # even with a permissive umask
    try:
        token = ensure_token(tmp_path, "http://127.0.0.1:9")
    finally:
        os.umask(old)
    path = tmp_path / TOKEN_FILE
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("suggested", "expected"),
    [
        ("lossweep-x-report.html", "lossweep-x-report.html"),
        ("../../.bashrc", "bashrc"),
        ("/etc/cron.d/job", "job"),
        ("C:\\Windows\\evil.dll", "evil.dll"),
        ("rep\nort .html", "rep_ort_.html"),
        ("..", "lossweep-report.html"),
        ("", "lossweep-report.html"),
    ],
)
def test_report_download_name_is_a_plain_basename(suggested: str, expected: str) -> None:
    assert safe_filename(suggested, "lossweep-report.html") == expected


def test_cli_report_writes_into_the_current_directory(live_service: LiveService, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lossweep.cli.main import app

    alice = live_service.client("alice")
    sweep = alice.post("/v1/sweeps", json={"preset": "demo"}).json()
    fill_sweep_dir(server_dir(live_service, sweep["id"]))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["report", sweep["id"], "--format", "md", "--url", live_service.url],
                                env={"LOSSWEEP_TOKEN": live_service.tokens["alice"]})
    assert result.exit_code == 0, result.output
    written = Path(result.stdout.strip().splitlines()[-1])
    assert written.parent == Path(".") and (tmp_path / written).is_file()
    assert httpx.get(f"{live_service.url}/healthz").status_code == 200
