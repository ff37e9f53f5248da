"""family notices: what each emergency contact is told about (ticket events), by text or
call, and whether the night's quiet hours apply to them (dispatch.family)

Revision ID: 0024_family_notify
Revises: 0023_prices
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0024_family_notify'
down_revision = '0023_prices'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('emergency_contact') as batch:
        batch.add_column(
            sa.Column(
                'notify_events',
                sa.JSON().with_variant(sa.JSON(none_as_null=True), 'postgresql'),
                nullable=False,
                server_default='["late", "no_show", "emergency"]',
            )
        )
        batch.add_column(
            sa.Column(
                'notify_by',
                sqlmodel.sql.sqltypes.AutoString(length=8),
                nullable=False,
                server_default='text',
            )
        )
        batch.add_column(
            sa.Column('notify_quiet', sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table('emergency_contact') as batch:
        batch.drop_column('notify_quiet')
        batch.drop_column('notify_by')
        batch.drop_column('notify_events')
