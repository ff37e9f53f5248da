"""phone outages: an outbound call remembers when the backend really placed it

Revision ID: 0010_outage
Revises: 0008_flow_keys
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import eventlog.db

revision = "0010_outage"
down_revision = "0009_one_phone_one_resident"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dialed_at", eventlog.db.UTCDateTime(timezone=True), nullable=True)
        )
    # Outbound calls from before this column were all handed to the backend: marked dialed,
    # or the first start after the upgrade would place them a second time.
    op.execute('UPDATE "call" SET dialed_at = started_at WHERE direction = \'out\'')


def downgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_column("dialed_at")
