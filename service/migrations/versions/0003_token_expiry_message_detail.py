"""Optional expiry of API tokens; a failed sweep's full detail (for admins) beside its one-line message.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lossweep_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("lossweep_sweeps") as batch:
        batch.add_column(sa.Column("message_detail", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lossweep_sweeps") as batch:
        batch.drop_column("message_detail")
    with op.batch_alter_table("lossweep_tokens") as batch:
        batch.drop_column("expires_at")
