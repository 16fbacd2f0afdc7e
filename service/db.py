"""Database engine and sessions (SQLAlchemy 2). SQLite by default, any URL via ``LOSSWEEP_DATABASE_URL``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from service.models import Sweep


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode and a busy timeout so concurrent requests queue
    instead of failing with 'database is locked'."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1].split("?", 1)[0]
        if path and path != ":memory:" and not path.startswith("file:"):
            private_file(Path(path).expanduser())
        # Requests run in a thread pool (40 threads by default): keep enough connections for all of them.
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=30
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)


def private_file(path: Path) -> None:
    """Creates the database file readable by its owner only (0600; SQLite gives its -wal and -shm files the
    same mode), and tightens an existing one: it holds who submitted what and the token hashes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "lossweep_alembic_version"
#: The revision whose schema lossweep 0.1.0 made with create_all, before migrations were kept.
FIRST_REVISION = "0001"


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


#: Key of the PostgreSQL advisory lock held around a schema upgrade (any fixed 64-bit number of ours).
MIGRATION_LOCK_KEY = int.from_bytes(hashlib.sha256(b"lossweep-schema-upgrade").digest()[:8], "big", signed=True)


def _lock_for_upgrade(connection: Connection) -> None:
    """Makes this upgrade the only one running on the database until its transaction ends: several
    service processes sharing a database all upgrade at start-up, and the later ones must find the schema
    already upgraded rather than race to create it. PostgreSQL: a transaction-scoped advisory lock;
    SQLite: an exclusive transaction (the others wait on the busy timeout)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif dialect == "sqlite" and not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN EXCLUSIVE")


def upgrade(engine: Engine) -> str | None:
    """Brings the schema to the newest migration and returns its revision, under a database lock (see
    ``_lock_for_upgrade``). A database that 0.1.0 made (its tables, no version table) is recorded as the
    first revision first, then upgraded."""
    from alembic import command

    with engine.begin() as connection:
        _lock_for_upgrade(connection)  # before looking at the schema: a waiter then sees the upgraded one
        config = _alembic_config(connection)
        tables = set(inspect(connection).get_table_names())
        if VERSION_TABLE not in tables and Sweep.__tablename__ in tables:
            command.stamp(config, FIRST_REVISION)
        command.upgrade(config, "head")
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def init_db(engine: Engine) -> None:
    """The schema at the newest migration (created, or upgraded from any earlier release)."""
    upgrade(engine)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session committed on success and rolled back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(engine: Engine) -> None:
    """Raises when the database does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
