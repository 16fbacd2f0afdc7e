"""Alembic's environment: runs the migrations on the connection ``service.db.upgrade`` hands over."""

from __future__ import annotations

from alembic import context

from service.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  version_table="lossweep_alembic_version")
with context.begin_transaction():
    context.run_migrations()
