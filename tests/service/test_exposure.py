"""What users see of the server: security headers on every answer, token expiry, one-line failure
reasons without tracebacks or terminal codes (the detail for admins only), reports without server paths
for non-admins, and one render per report however many ask at once. Each attack next to its defence."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from service.auth import create_token, parse_expiry
from service.db import session_scope
from service.failure import failure_text
from service.models import Sweep
from service.security_headers import CSP, DOCS_CSP, REPORT_CSP
from service.single_flight import SingleFlight
from tests.fixtures.service import LiveService
from tests.service.helpers import demo_spec, fill_sweep_dir, server_dir

ESC = "\x1b"


def test_every_answer_carries_the_security_headers(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    for path in ("/ui/", "/v1/me", "/v1/sweeps/nope", "/v1/health", "/no-such-page"):
        response = alice.get(path)
        assert response.headers["content-security-policy"] == CSP, path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP  # the page has no inline script
    page = alice.get("/ui/").text
    assert "<script>" not in page and " on" not in page.split("<body", 1)[-1].split(">", 1)[0]
    assert alice.get("/docs").headers["content-security-policy"] == DOCS_CSP


def test_tokens_expire(live_service: LiveService) -> None:
    sessions = live_service.app.state.lossweep.sessions
    soon = datetime.now(UTC) + timedelta(days=30)
    with session_scope(sessions) as session:
        _, fresh = create_token(session, "carol", expires_at=soon)
        _, stale = create_token(session, "carol", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    live_service.tokens.update(carol=fresh, stale=stale)
    me = live_service.client("carol").get("/v1/me").json()
    assert me["name"] == "carol" and abs(datetime.fromisoformat(me["expires_at"]) - soon) < timedelta(seconds=1)
    response = live_service.client("stale").get("/v1/me")
    assert response.status_code == 401 and "expired" in response.json()["message"]
    assert live_service.client("alice").get("/v1/me").json()["expires_at"] is None


def test_token_create_expires_option(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from lossweep.cli.main import app

    monkeypatch.setenv("LOSSWEEP_HOME", str(tmp_path))
    monkeypatch.delenv("LOSSWEEP_DATABASE_URL", raising=False)
    ok = CliRunner().invoke(app, ["token", "create", "dave", "--expires", "30d"])
    assert ok.exit_code == 0 and "expires" in ok.output, ok.output
    listed = CliRunner().invoke(app, ["token", "list"])
    assert "expires" in listed.output
    for bad in ("yesterday", "2020-01-01T00:00Z", "2030-01-01T00:00", "0d"):
        result = CliRunner().invoke(app, ["token", "create", "dave", "--expires", bad])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and "--expires" in result.output
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("2027-01-31T00:00Z", now) == datetime(2027, 1, 31, tzinfo=UTC)


TRACEBACK = [
    f"{ESC}[36m(TrialDriver pid=123){ESC}[0m Traceback (most recent call last):",
    '  File "/opt/lossweep/.venv/lib/python3.11/site-packages/search_spaces/run/driver.py", line 88, in run',
    "    raise ShardError(msg)",
    f"{ESC}[31mtrainables.data.shards.ShardError: shard set /srv/sweeps/s-1/x: manifest.json is missing{ESC}[0m",
]


def test_a_failure_is_one_clean_line_and_the_detail_is_for_admins(live_service: LiveService) -> None:
    reason, detail = failure_text(f"Job failed {ESC}[1mbadly{ESC}[0m\nTraceback (most recent call last):\n  File "
                                  '"/x.py"', TRACEBACK, "/srv/sweeps/s-1")
    assert reason == "failed: trainables.data.shards.ShardError: shard set <sweep dir>/x: manifest.json is missing"
    assert ESC not in reason + detail and "\n" not in reason and 'File "' in detail
    assert failure_text("", [], "")[0].startswith("failed")
    assert failure_text("", [f"(TrainWorker pid=7) {ESC}[31mValueError: bad lr{ESC}[0m"], "")[0] == \
        "failed: ValueError: bad lr"
    assert failure_text("Traceback (most recent call last):\n  File \"/a.py\", line 1", [], "")[0] == \
        "failed (an administrator can see the detail)"
    alice, root = live_service.client("alice"), live_service.client("root")
    sweep_id = alice.post("/v1/sweeps", json=demo_spec(alice)).json()["id"]
    with session_scope(live_service.app.state.lossweep.sessions) as session:
        row = session.get(Sweep, sweep_id)
        assert row is not None
        row.message, row.message_detail = reason, detail
    mine = alice.get(f"/v1/sweeps/{sweep_id}").json()
    assert mine["message"] == reason and mine["message_detail"] is None and mine["sweep_dir"] is None
    assert root.get(f"/v1/sweeps/{sweep_id}").json()["message_detail"] == detail


def test_reports_show_server_paths_to_admins_only(live_service: LiveService) -> None:
    alice, root = live_service.client("alice"), live_service.client("root")
    sweep_id = alice.post("/v1/sweeps", json=demo_spec(alice)).json()["id"]
    where = server_dir(live_service, sweep_id)
    fill_sweep_dir(where)
    for fmt in ("json", "md", "html"):
        text = alice.get(f"/v1/sweeps/{sweep_id}/report", params={"format": fmt}).text
        assert where not in text, fmt
    assert alice.get(f"/v1/sweeps/{sweep_id}/report", params={"format": "json"}).json()["sweep"]["dir"] is None
    assert root.get(f"/v1/sweeps/{sweep_id}/report", params={"format": "json"}).json()["sweep"]["dir"] == where
    html = alice.get(f"/v1/sweeps/{sweep_id}/report")
    assert html.headers["content-security-policy"] == REPORT_CSP and "<script" not in html.text


def test_concurrent_requests_make_one_render(live_service: LiveService, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import service.routes.results as routes

    alice = live_service.client("alice")
    sweep_id = alice.post("/v1/sweeps", json=demo_spec(alice)).json()["id"]
    fill_sweep_dir(server_dir(live_service, sweep_id))
    renders: list[str] = []
    real = routes.render_report

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        renders.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(routes, "render_report", counted)
    statuses: list[int] = []

    def fetch() -> None:
        with live_service.client("alice") as client:
            statuses.append(client.get(f"/v1/sweeps/{sweep_id}/report", params={"format": "md"}).status_code)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 8 and renders == ["md"]


def test_single_flight_makes_each_value_once_and_retries_a_failure() -> None:
    cache: SingleFlight[int] = SingleFlight(kept=2)
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> int:
        calls.append("a")
        started.set()
        release.wait()
        return 1

    results: list[int] = []
    leader = threading.Thread(target=lambda: results.append(cache.get("a", slow)))
    leader.start()
    started.wait()
    waiters = [threading.Thread(target=lambda: results.append(cache.get("a", slow))) for _ in range(5)]
    for t in waiters:
        t.start()
    release.set()
    for t in [leader, *waiters]:
        t.join()
    assert results == [1] * 6 and calls == ["a"]

    def boom() -> int:
        raise RuntimeError("no")

    for _ in range(2):
        try:
            cache.get("b", boom)
        except RuntimeError:
            pass
    assert cache.get("b", lambda: 2) == 2  # a failure is not kept
    cache.get("c", lambda: 3)
    assert cache.get("a", lambda: 9) == 9  # only the last two are kept
