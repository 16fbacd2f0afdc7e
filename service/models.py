"""Database tables: sweeps (who submitted what, status, the Ray job), API tokens (hashes only) and
idempotency keys. Results never live here: the sweep directory is their single source of truth."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from search_spaces.run.sweep_dir import FINAL_SWEEP_STATUSES, SWEEP_STATUSES


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class _Status(enum.StrEnum):
    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


#: A sweep's status in the service: QUEUED (not yet on Ray), then the sweep dir's statuses.
SweepStatus = _Status("SweepStatus", [("QUEUED", "QUEUED"), *((s, s) for s in SWEEP_STATUSES)], module=__name__)
FINAL_STATUSES = frozenset(SweepStatus(s) for s in FINAL_SWEEP_STATUSES)


class Base(DeclarativeBase):
    pass


class Sweep(Base):
    __tablename__ = "lossweep_sweeps"
    __table_args__ = (
        # Covering indexes for the per-submission counts (a user's running and waiting sweeps) and the
        # queue scan, so neither reads the rows (and their specs) of a long history.
        Index("ix_lossweep_sweeps_owner_queue", "owner", "status", "ray_submission_id"),
        Index("ix_lossweep_sweeps_queue", "status", "ray_submission_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(200), index=True)
    preset: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=SweepStatus.QUEUED.value)
    # Why the sweep is where it is, for people ("waiting: alice has 2 sweeps running", "Ray unreachable", ...).
    message: Mapped[str] = mapped_column(Text, default="")
    # The full reason of a failure (log lines, traceback), shown to admins; ``message`` is its one line.
    message_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    num_trials: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sweep_dir: Mapped[str] = mapped_column(Text)
    # Ray's job submission id; set once the job is submitted (deterministic: lossweep-<sweep id>).
    ray_submission_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    ray_job_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Place among its owner's sweeps waiting for the per-user limit (1 = next); None when not waiting for it.
    queue_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Last snapshot of the sweep dir's progress.json (counts, best, tokens, eta), refreshed by the monitor.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def status_enum(self) -> SweepStatus:
        return SweepStatus(self.status)


class ApiToken(Base):
    __tablename__ = "lossweep_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The user the token acts as; several tokens may share one name.
    name: Mapped[str] = mapped_column(String(200), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a token in listings
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # None: never


class IdempotencyKey(Base):
    __tablename__ = "lossweep_idempotency"
    __table_args__ = (UniqueConstraint("owner", "key", name="uq_lossweep_idempotency_owner_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(255))
    body_hash: Mapped[str] = mapped_column(String(64))
    sweep_id: Mapped[str] = mapped_column(ForeignKey("lossweep_sweeps.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
