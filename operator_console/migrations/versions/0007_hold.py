"""hold and transfer at the operator desk: when the caller was put on hold

Revision ID: 0007_hold
Revises: 0006_merchantcode
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import eventlog.db

revision = "0007_hold"
down_revision = "0006_merchantcode"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("held_at", eventlog.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_column("held_at")
