"""dispatch: escalation level, arrival, follow-up, repeat orders; offer statistics index

Revision ID: 0003
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import eventlog.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("escalation_level", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("follow_up", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("repeat_of", BigId, nullable=True))
        batch_op.add_column(sa.Column("rated_by", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("arrived_at", eventlog.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_ticket_resident_category", ["resident_id", "category_code"])
        batch_op.create_index("ix_ticket_merchant_rated", ["merchant_id", "rated_at"])
    with op.batch_alter_table("offer", schema=None) as batch_op:
        batch_op.create_index("ix_offer_merchant_placed", ["merchant_id", "placed_at"])


def downgrade() -> None:
    with op.batch_alter_table("offer", schema=None) as batch_op:
        batch_op.drop_index("ix_offer_merchant_placed")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_merchant_rated")
        batch_op.drop_index("ix_ticket_resident_category")
        for name in ("arrived_at", "rated_by", "repeat_of", "follow_up", "escalation_level"):
            batch_op.drop_column(name)
