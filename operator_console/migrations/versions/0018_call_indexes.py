"""call indexes: the unfinished calls by direction and state, a period by start time

Revision ID: 0018_call_indexes
Revises: 0015_wellbeing
"""
from __future__ import annotations

from alembic import op

revision = '0018_call_indexes'
down_revision = '0015_wellbeing'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_call_direction_state', 'call', ['direction', 'state'], unique=False)
    op.create_index('ix_call_started_at', 'call', ['started_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_call_started_at', table_name='call')
    op.drop_index('ix_call_direction_state', table_name='call')
