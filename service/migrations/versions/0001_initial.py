"""The schema of lossweep 0.1.0 (sweeps, API tokens, idempotency keys), as its create_all made it.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lossweep_sweeps",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("preset", sa.String(100), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("num_trials", sa.Integer(), nullable=True),
        sa.Column("sweep_dir", sa.Text(), nullable=False),
        sa.Column("ray_submission_id", sa.String(128), nullable=True),
        sa.Column("ray_job_status", sa.String(16), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lossweep_sweeps_created_at", "lossweep_sweeps", ["created_at"])
    op.create_index("ix_lossweep_sweeps_owner", "lossweep_sweeps", ["owner"])
    op.create_index("ix_lossweep_sweeps_status", "lossweep_sweeps", ["status"])
    op.create_index("ix_lossweep_sweeps_owner_queue", "lossweep_sweeps", ["owner", "status", "ray_submission_id"])
    op.create_index("ix_lossweep_sweeps_queue", "lossweep_sweeps", ["status", "ray_submission_id", "created_at"])
    op.create_table(
        "lossweep_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lossweep_tokens_name", "lossweep_tokens", ["name"])
    op.create_table(
        "lossweep_idempotency",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("sweep_id", sa.String(64), sa.ForeignKey("lossweep_sweeps.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner", "key", name="uq_lossweep_idempotency_owner_key"),
    )


def downgrade() -> None:
    op.drop_table("lossweep_idempotency")
    op.drop_table("lossweep_tokens")
    op.drop_table("lossweep_sweeps")
