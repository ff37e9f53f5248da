"""booked visits: a ticket's booked date and time window, and its reminders to the resident
and the merchant (dispatch.booking)

Revision ID: 0026_booked_visits
Revises: 0025_reminders
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_booked_visits"
down_revision = "0025_reminders"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("booked_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("booked_from", sa.Time(), nullable=True))
        batch_op.add_column(sa.Column("booked_until", sa.Time(), nullable=True))
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ticket_id", _ID, nullable=True))
        batch_op.create_index(batch_op.f("ix_reminder_ticket_id"), ["ticket_id"], unique=False)
        batch_op.create_foreign_key("fk_reminder_ticket_id", "ticket", ["ticket_id"], ["id"])
        batch_op.add_column(sa.Column("merchant_id", _ID, nullable=True))
        batch_op.create_foreign_key("fk_reminder_merchant_id", "merchant", ["merchant_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.drop_constraint("fk_reminder_merchant_id", type_="foreignkey")
        batch_op.drop_column("merchant_id")
        batch_op.drop_constraint("fk_reminder_ticket_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_reminder_ticket_id"))
        batch_op.drop_column("ticket_id")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_column("booked_until")
        batch_op.drop_column("booked_from")
        batch_op.drop_column("booked_on")
