"""``can_cancel`` on GET /v1/sweeps/{id} says what POST .../cancel would answer: true for the owner and
admins while the sweep runs or waits, false for other users, anonymous readers and ended sweeps."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.fixtures.service import LiveService


def test_can_cancel_matches_what_the_cancel_route_allows(service_factory: Callable[..., LiveService]) -> None:
    live = service_factory(public_read=True)
    with live.client("alice") as alice:
        sweep_id = alice.post("/v1/sweeps", json={"preset": "demo", "name": "mine"}).json()["id"]
    expected = {"alice": True, "root": True, "bob": False}
    for user, allowed in expected.items():
        with live.client(user) as c:
            assert c.get(f"/v1/sweeps/{sweep_id}").json()["can_cancel"] is allowed, user
    anonymous = httpx.get(f"{live.url}/v1/sweeps/{sweep_id}").json()
    assert anonymous["can_cancel"] is False

    with live.client("bob") as bob:
        assert bob.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 403
    with live.client("alice") as alice:
        assert alice.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 202
        ended = alice.get(f"/v1/sweeps/{sweep_id}").json()
        assert ended["status"] == "CANCELLED" and ended["can_cancel"] is False
        assert alice.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 409
