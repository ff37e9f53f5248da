"""the catalog's menu_digit goes: the keys a caller presses come from the hotline flow

Revision ID: 0008_flow_keys
Revises: 0007_hold
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0008_flow_keys"
down_revision = "0007_hold"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("service_category", schema=None) as batch_op:
        batch_op.drop_column("menu_digit")


def downgrade() -> None:
    with op.batch_alter_table("service_category", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("menu_digit", sqlmodel.sql.sqltypes.AutoString(length=1), nullable=True)
        )
