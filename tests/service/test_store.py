"""The store (tokens, sweeps, idempotency keys), the queue and reconciliation, on SQLite and on a real
PostgreSQL (skipped cleanly when no server answers at 127.0.0.1:5432)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from service.auth import authenticate, create_token, hash_token, revoke_tokens
from service.db import session_scope
from service.models import ApiToken, IdempotencyKey, Sweep, SweepStatus
from service.queue import schedule
from service.reconcile import reconcile
from service.state import ServiceState
from tests.fixtures.service import LiveService, make_settings


@pytest.fixture
def state(db_url: str, tmp_path: Path) -> Iterator[ServiceState]:
    st = ServiceState.from_settings(make_settings(tmp_path, database_url=db_url, max_concurrent_sweeps_per_user=1))
    yield st
    st.close()


def add_sweep(state: ServiceState, sweep_id: str, owner: str = "alice", *, minutes_ago: float = 0, **fields) -> None:
    with session_scope(state.sessions) as session:
        session.add(
            Sweep(
                id=sweep_id,
                name=sweep_id,
                owner=owner,
                status=fields.pop("status", SweepStatus.QUEUED.value),
                message="queued",
                spec={"name": sweep_id},
                num_trials=2,
                sweep_dir=str(Path(state.settings.resolved_storage_root) / sweep_id),
                created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
                **fields,
            )
        )


def test_tokens_store_only_hashes(state: ServiceState) -> None:
    with session_scope(state.sessions) as session:
        row, token = create_token(session, "alice")
        _, admin_token = create_token(session, "root", admin=True)
    with session_scope(state.sessions) as session:
        stored = session.scalar(select(ApiToken).where(ApiToken.id == row.id))
        assert stored is not None and stored.token_hash == hash_token(token)
        dump = json.dumps([list(r) for r in session.execute(text("SELECT * FROM lossweep_tokens"))], default=str)
        assert token not in dump and admin_token not in dump
        alice = authenticate(session, token)
        assert alice is not None and alice.name == "alice" and not alice.is_admin
        root = authenticate(session, admin_token)
        assert root is not None and root.is_admin
        assert authenticate(session, token + "x") is None
        assert revoke_tokens(session, name="alice") == 1
    with session_scope(state.sessions) as session:
        assert authenticate(session, token) is None
        with pytest.raises(ValueError, match="token name"):
            create_token(session, "has space")


def test_idempotency_keys_are_unique_per_owner(state: ServiceState) -> None:
    add_sweep(state, "s1")
    add_sweep(state, "s2", owner="bob")
    with session_scope(state.sessions) as session:
        session.add(IdempotencyKey(owner="alice", key="k", body_hash="a" * 64, sweep_id="s1"))
        session.add(IdempotencyKey(owner="bob", key="k", body_hash="b" * 64, sweep_id="s2"))
    with pytest.raises(IntegrityError), session_scope(state.sessions) as session:
        session.add(IdempotencyKey(owner="alice", key="k", body_hash="c" * 64, sweep_id="s1"))


def test_timestamps_come_back_timezone_aware(state: ServiceState) -> None:
    add_sweep(state, "s1", minutes_ago=5)
    with session_scope(state.sessions) as session:
        sweep = session.get(Sweep, "s1")
        assert sweep is not None and sweep.created_at.tzinfo is not None
        assert timedelta(minutes=4) < datetime.now(UTC) - sweep.created_at < timedelta(minutes=6)


def test_queue_waits_in_order_behind_the_per_user_limit(state: ServiceState) -> None:
    # alice already runs one sweep (limit 1): her others wait, in submission order; bob's is tried at once.
    add_sweep(state, "a-running", minutes_ago=10, status="RUNNING", ray_submission_id="lossweep-a-running")
    add_sweep(state, "a-second", minutes_ago=5)
    add_sweep(state, "a-first", minutes_ago=8)
    add_sweep(state, "b-only", owner="bob", minutes_ago=1)
    assert schedule(state) == 0  # Ray is unreachable in this test
    with session_scope(state.sessions) as session:
        first, second, bob = (session.get(Sweep, i) for i in ("a-first", "a-second", "b-only"))
        assert first is not None and second is not None and bob is not None
        assert "position 1" in first.message and "position 2" in second.message
        assert bob.message.startswith("waiting for Ray") and bob.ray_submission_id is None
        session.get(Sweep, "a-running").status = SweepStatus.SUCCEEDED.value  # type: ignore[union-attr]
    schedule(state, owner="alice")
    with session_scope(state.sessions) as session:
        assert session.get(Sweep, "a-first").message.startswith("waiting for Ray")  # type: ignore[union-attr]
        assert session.get(Sweep, "a-first").status == "QUEUED"  # type: ignore[union-attr]


def test_concurrent_schedules_never_double_submit(state: ServiceState) -> None:
    for i in range(5):
        add_sweep(state, f"s{i}", minutes_ago=i)
    threads = [threading.Thread(target=schedule, args=(state,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with session_scope(state.sessions) as session:
        assert all(s.ray_submission_id is None for s in session.scalars(select(Sweep)))


def test_reconcile_reads_progress_and_survives_ray_being_down(state: ServiceState) -> None:
    add_sweep(state, "run", status="RUNNING", ray_submission_id="lossweep-run")
    sweep_dir = Path(state.settings.resolved_storage_root) / "run"
    sweep_dir.mkdir(parents=True)
    progress = {"status": "RUNNING", "counts": {"RUNNING": 1, "TERMINATED": 1}, "total_trials": 2,
                "best": {"trial_id": "t0", "method": "baseline", "val_loss": 2.5, "params": {"lr": 0.001}}}
    (sweep_dir / "progress.json").write_text(json.dumps(progress))
    assert reconcile(state) == 1
    with session_scope(state.sessions) as session:
        sweep = session.get(Sweep, "run")
        assert sweep is not None and sweep.progress == progress
        assert sweep.status == "RUNNING" and sweep.message.startswith("status unknown")


def test_api_on_this_database(db_url: str, service_factory) -> None:  # type: ignore[no-untyped-def]
    live: LiveService = service_factory(database_url=db_url)
    alice, root = live.client("alice"), live.client("root")
    key = {"Idempotency-Key": "once"}
    first = alice.post("/v1/sweeps", json={"preset": "demo"}, headers=key)
    assert first.status_code == 201, first.text
    assert alice.post("/v1/sweeps", json={"preset": "demo"}, headers=key).json()["id"] == first.json()["id"]
    assert alice.post("/v1/sweeps", json={"preset": "demo", "name": "x"}, headers=key).status_code == 409
    second = alice.post("/v1/sweeps", json={"preset": "demo"}).json()
    listed = alice.get("/v1/sweeps").json()
    assert [s["id"] for s in listed["items"]] == [second["id"], first.json()["id"]]
    assert root.post(f"/v1/sweeps/{second['id']}/cancel").json()["status"] == "CANCELLED"
    assert alice.get("/v1/sweeps", params={"status": "QUEUED"}).json()["total"] == 1
    assert alice.get(f"/v1/sweeps/{first.json()['id']}").json()["created_at"].endswith("Z")


def test_idempotent_submissions_racing_create_one_sweep(db_url: str, service_factory) -> None:  # type: ignore[no-untyped-def]
    live: LiveService = service_factory(database_url=db_url)
    ids: list[str] = []
    errors: list[str] = []

    def post() -> None:
        with live.client("alice") as c:
            r = c.post("/v1/sweeps", json={"preset": "demo"}, headers={"Idempotency-Key": "race"})
            (ids if r.status_code == 201 else errors).append(r.json().get("id") or r.text)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 1 and len(ids) == 6
    assert live.client("alice").get("/v1/sweeps").json()["total"] == 1


def test_queue_limit_holds_under_concurrent_submissions(db_url: str, tmp_path: Path) -> None:
    """Many submissions of one user at the same instant, each in its own session as separate service
    processes would make them: the queue limit is never exceeded (the count and the insert are atomic)."""
    from service.auth import Principal
    from service.errors import ApiError
    from service.sweeps import create_sweep

    settings = make_settings(tmp_path, database_url=db_url, max_queued_sweeps_per_user=2)
    states = [ServiceState.from_settings(settings) for _ in range(4)]  # four "processes"
    alice = Principal(name="alice", is_admin=False)
    barrier = threading.Barrier(12)
    outcomes: list[int] = []

    def submit(state: ServiceState) -> None:
        barrier.wait()
        with state.write_lock, session_scope(state.sessions) as session:
            try:
                create_sweep(session, settings, alice, {"preset": "demo"}, None)
                outcomes.append(201)
            except ApiError as exc:
                outcomes.append(exc.status)

    threads = [threading.Thread(target=submit, args=(states[i % 4],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        with session_scope(states[0].sessions) as session:
            stored = session.scalar(select(text("count(*)")).select_from(Sweep))
        assert sorted(outcomes) == [201, 201] + [429] * 10, outcomes
        assert stored == 2
    finally:
        for st in states:
            st.close()
