"""operators call out: a click-to-call remembers the call it was placed from; the
emergency panel's registry fields (risk notes, key holder, key safe; the grid worker)

Revision ID: 0013_callouts
Revises: 0012_emergency
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0013_callouts"
# main's head when this branch was cut (the lead re-chains it after the emergency branch)
down_revision = "0012_emergency"
branch_labels = None
depends_on = None


def _text(name: str, length: int) -> sa.Column[str]:
    return sa.Column(
        name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=False, server_default=""
    )


def upgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "parent_call_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
    with op.batch_alter_table("resident", schema=None) as batch_op:
        batch_op.add_column(_text("risk_notes", 500))
        batch_op.add_column(_text("key_holder", 100))
        batch_op.add_column(_text("key_safe", 200))
    with op.batch_alter_table("grid", schema=None) as batch_op:
        batch_op.add_column(_text("worker_name", 64))
        batch_op.add_column(_text("worker_phone", 32))


def downgrade() -> None:
    with op.batch_alter_table("grid", schema=None) as batch_op:
        batch_op.drop_column("worker_phone")
        batch_op.drop_column("worker_name")
    with op.batch_alter_table("resident", schema=None) as batch_op:
        batch_op.drop_column("key_safe")
        batch_op.drop_column("key_holder")
        batch_op.drop_column("risk_notes")
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_column("parent_call_id")
