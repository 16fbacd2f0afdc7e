"""Who sees what: users list and read their own sweeps, admins everyone's; LOSSWEEP_PUBLIC_READ opens
reads to all; server paths are for admins; /readyz tells anonymous callers only ok or unreachable."""

from __future__ import annotations

import httpx

from tests.fixtures.service import LiveService
from tests.service.test_api import assert_error


def test_users_see_their_own_sweeps_admins_all(live_service: LiveService) -> None:
    alice, bob, root = (live_service.client(u) for u in ("alice", "bob", "root"))
    mine = alice.post("/v1/sweeps", json={"preset": "demo"}).json()
    theirs = bob.post("/v1/sweeps", json={"preset": "demo"}).json()
    assert mine["sweep_dir"] is None and theirs["sweep_dir"] is None  # no server paths for users

    assert [s["id"] for s in alice.get("/v1/sweeps").json()["items"]] == [mine["id"]]
    assert alice.get("/v1/sweeps", params={"owner": "bob"}).json()["total"] == 0
    for path in ("", "/trials", "/report", "/best-config", "/trials/t0/metrics"):
        assert_error(alice.get(f"/v1/sweeps/{theirs['id']}{path}"), 404, "path.sweep_id")
    assert_error(alice.post(f"/v1/sweeps/{theirs['id']}/cancel"), 404, "path.sweep_id")

    listed = root.get("/v1/sweeps").json()
    assert listed["total"] == 2 and all(s["sweep_dir"] for s in listed["items"])
    assert root.get(f"/v1/sweeps/{theirs['id']}").json()["sweep_dir"]


def test_public_read_opens_reads_to_everyone(service_factory) -> None:  # type: ignore[no-untyped-def]
    live = service_factory(public_read=True)
    alice, bob, anon = live.client("alice"), live.client("bob"), live.client(user=None)
    sweep = alice.post("/v1/sweeps", json={"preset": "demo"}).json()
    assert bob.get(f"/v1/sweeps/{sweep['id']}").json()["sweep_dir"] is None
    assert anon.get("/v1/sweeps").json()["total"] == 1
    assert bob.get("/v1/sweeps").json()["total"] == 1
    assert_error(bob.post(f"/v1/sweeps/{sweep['id']}/cancel"), 403, "path.sweep_id")  # reads only


def test_readyz_reveals_nothing_to_anonymous_callers(live_service: LiveService) -> None:
    anonymous = httpx.get(f"{live_service.url}/readyz").json()
    assert anonymous == {"status": "unavailable", "database": "ok", "ray": "unreachable"}
    admin = live_service.client("root").get("/readyz").json()
    assert live_service.settings.ray_address in admin["ray"]
