"""A waiting sweep's place in its owner's queue as a column (it was only a prefix of the message).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lossweep_sweeps") as batch:
        batch.add_column(sa.Column("queue_position", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lossweep_sweeps") as batch:
        batch.drop_column("queue_position")
