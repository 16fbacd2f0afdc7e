"""Upgrades lose nothing: a database made by the previous release (0.1.0, whose schema was created
with create_all and is kept here as its DDL) is filled with sweeps and tokens, upgraded by the service
at start-up or by ``lossweep db upgrade``, and everything in it stays readable and every token valid."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from service.auth import hash_token
from service.db import VERSION_TABLE, current_revision, make_engine, upgrade
from service.models import Base

SCHEMA_0_1_0 = Path(__file__).parent / "schema_0_1_0"
OLD_TOKENS = {"alice": "lsw_old-alice-token-0123456789", "root": "lsw_old-root-token-0123456789"}


def old_database(url: str) -> None:
    """The 0.1.0 schema, with two users' tokens, three sweeps and an idempotency key in it."""
    engine = create_engine(url)
    dialect = "postgresql" if engine.dialect.name == "postgresql" else "sqlite"
    ddl = (SCHEMA_0_1_0 / f"{dialect}.sql").read_text()
    now = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for statement in ddl.split(";\n"):
            if statement.strip():
                conn.execute(text(statement))
        for i, (name, token) in enumerate(OLD_TOKENS.items(), start=1):
            conn.execute(text(
                "INSERT INTO lossweep_tokens (id, name, token_hash, prefix, is_admin, revoked, created_at) "
                "VALUES (:id, :name, :hash, :prefix, :admin, :revoked, :at)"
            ), {"id": i, "name": name, "hash": hash_token(token), "prefix": token[:10], "admin": name == "root",
                "revoked": False, "at": now})
        sweeps = [
            ("old-done", "SUCCEEDED", "finished", {"status": "SUCCEEDED", "counts": {"TERMINATED": 2}, "best": {
                "trial_id": "t1", "method": "z_loss", "val_loss": 2.4, "params": {"lr": 0.001}}}),
            ("old-waiting", "QUEUED", "waiting: alice has 2 sweeps running (limit 2); position 1 in the queue", None),
            ("old-cancelled", "CANCELLED", "cancelled by alice before it started", None),
        ]
        for sid, status, message, progress in sweeps:
            conn.execute(text(
                "INSERT INTO lossweep_sweeps (id, name, owner, preset, status, message, spec, num_trials, sweep_dir, "
                "ray_submission_id, ray_job_status, cancel_requested, progress, created_at, updated_at) VALUES "
                "(:id, :id, 'alice', 'demo', :status, :message, :spec, 2, :dir, :rsid, :rstatus, :cancel, :progress, "
                ":at, :at)"
            ), {"id": sid, "status": status, "message": message, "spec": json.dumps({"name": sid, "seeds": [0]}),
                "dir": f"/srv/sweeps/{sid}", "rsid": f"lossweep-{sid}" if status == "SUCCEEDED" else None,
                "rstatus": "SUCCEEDED" if status == "SUCCEEDED" else None, "cancel": status == "CANCELLED",
                "progress": json.dumps(progress) if progress else None, "at": now})
        conn.execute(text("INSERT INTO lossweep_idempotency (id, owner, key, body_hash, sweep_id, created_at) "
                          "VALUES (1, 'alice', 'k1', :hash, 'old-done', :at)"), {"hash": "0" * 64, "at": now})
    engine.dispose()


def test_the_service_upgrades_an_old_database_at_start_up(db_url: str, service_factory) -> None:  # type: ignore[no-untyped-def]
    old_database(db_url)
    live = service_factory(database_url=db_url, tokens=False, run_monitor=False)
    live.tokens.update(OLD_TOKENS)
    alice, root = live.client("alice"), live.client("root")
    # old tokens still valid
    assert alice.get("/v1/me").json() == {"name": "alice", "is_admin": False, "expires_at": None}
    assert root.get("/v1/me").json()["is_admin"] is True
    listed = {s["id"]: s for s in root.get("/v1/sweeps").json()["items"]}
    assert set(listed) == {"old-done", "old-waiting", "old-cancelled"}
    done = alice.get("/v1/sweeps/old-done").json()
    assert done["status"] == "SUCCEEDED" and done["best"]["trial_id"] == "t1" and done["spec"]["seeds"] == [0]
    assert done["created_at"].startswith("2026-11-24T08:00:00") and done["queue_position"] is None
    assert root.get("/v1/sweeps/old-waiting").json()["sweep_dir"] == "/srv/sweeps/old-waiting"
    # The old sweeps keep working: the waiting one can be cancelled, new ones submitted.
    assert alice.post("/v1/sweeps/old-waiting/cancel").json()["status"] == "CANCELLED"
    assert alice.post("/v1/sweeps", json={"preset": "demo"}).status_code == 201
    assert current_revision(live.app.state.lossweep.engine) == "0003"


def test_lossweep_db_upgrade_and_the_models_match_the_migrations(db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from lossweep.cli.main import app

    old_database(db_url)
    monkeypatch.setenv("LOSSWEEP_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "revision 0003 (was unversioned" in result.output
    again = CliRunner().invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0 and again.output.strip() == "database schema at revision 0003"
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []  # models == the migrations' schema
            rows = conn.execute(text("SELECT id, queue_position FROM lossweep_sweeps ORDER BY id")).all()
        assert [r[0] for r in rows] == ["old-cancelled", "old-done", "old-waiting"]
    finally:
        engine.dispose()


def test_a_new_database_is_created_at_the_newest_revision(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        assert upgrade(engine) == "0003"
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


_UPGRADE_WHEN_TOLD = """
import os, sys, time
from service.db import make_engine, upgrade
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.01)
engine = make_engine(sys.argv[1])
print(upgrade(engine))
engine.dispose()
"""


def test_two_processes_upgrading_at_once_both_succeed(db_url: str, tmp_path: Path) -> None:
    """Two service processes starting together on one new database: one upgrades under the database
    lock, the other waits for it and finds the schema upgraded; neither fails."""
    import subprocess
    import sys

    go = tmp_path / "go"
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen([sys.executable, "-c", _UPGRADE_WHEN_TOLD, db_url, str(go)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    go.write_text("")
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert out.strip().splitlines()[-1] == "0003", out
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
