"""What one running service holds: its settings, database and Ray handle. Built by ``create_app`` and
reached from requests through ``service.deps``."""

from __future__ import annotations

import contextlib
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.db import init_db, make_engine, make_sessionmaker
from service.ray_client import RayJobs
from service.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    ray: RayJobs
    # Serialises scheduling within this process; across processes the deterministic Ray submission id
    # keeps a sweep from being started twice.
    schedule_lock: threading.Lock = field(default_factory=threading.Lock)
    # SQLite has one writer at a time and makes waiting writers sleep and poll; queueing them on a lock
    # in the process hands the database over without those sleeps. Other databases need no lock.
    write_lock: AbstractContextManager[object] = field(default_factory=contextlib.nullcontext)

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceState:
        engine = make_engine(settings.resolved_database_url)
        init_db(engine)
        return cls(
            write_lock=threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext(),
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            ray=RayJobs(settings.ray_address, auth_token=settings.ray_token(), timeout_s=settings.ray_timeout_s),
        )

    def close(self) -> None:
        self.engine.dispose()
