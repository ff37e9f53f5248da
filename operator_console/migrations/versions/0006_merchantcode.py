"""merchant login code delivery: channel and one-time link on the code; request log for
the rate limits

Revision ID: 0006_merchantcode
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import eventlog.db

revision = "0006_merchantcode"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("merchant_login_code", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "channel",
                sqlmodel.sql.sqltypes.AutoString(length=8),
                nullable=False,
                server_default="voice",
            )
        )
        batch_op.add_column(
            sa.Column("link_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_merchant_login_code_link_hash"), ["link_hash"], unique=True
        )
    op.create_table(
        "merchant_login_request",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("phone_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("client_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", eventlog.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("merchant_login_request", schema=None) as batch_op:
        for column in ("phone_hash", "client_hash", "created_at"):
            batch_op.create_index(
                batch_op.f(f"ix_merchant_login_request_{column}"), [column], unique=False
            )


def downgrade() -> None:
    with op.batch_alter_table("merchant_login_request", schema=None) as batch_op:
        for column in ("created_at", "client_hash", "phone_hash"):
            batch_op.drop_index(batch_op.f(f"ix_merchant_login_request_{column}"))
    op.drop_table("merchant_login_request")
    with op.batch_alter_table("merchant_login_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merchant_login_code_link_hash"))
        batch_op.drop_column("link_hash")
        batch_op.drop_column("channel")
