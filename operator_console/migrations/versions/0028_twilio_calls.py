"""twilio calls: the Twilio adapter's call state, for a process taking over (providers.twilio.state)

Revision ID: 0028_twilio_calls
Revises: 0027_outbound_queue
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import eventlog.db

revision = '0028_twilio_calls'
down_revision = '0027_outbound_queue'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('twilio_call',
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('sid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('ended', sa.Boolean(), nullable=False),
    sa.Column('state', sa.JSON().with_variant(sa.JSON(none_as_null=True), 'postgresql'), nullable=True),
    sa.Column('updated_at', eventlog.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('ref'),
    )
    op.create_index(op.f('ix_twilio_call_sid'), 'twilio_call', ['sid'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_twilio_call_sid'), table_name='twilio_call')
    op.drop_table('twilio_call')
