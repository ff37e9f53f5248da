"""ticket assignee: the operator who looks after a ticket now (reassign from the board)

Revision ID: 0021_ticket_assignee
Revises: 0020_command
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0021_ticket_assignee'
down_revision = '0020_command'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ticket') as batch:
        batch.add_column(
            sa.Column('assigned_to', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('ticket') as batch:
        batch.drop_column('assigned_to')
