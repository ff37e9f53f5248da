"""disputes: a merchant's objection to a rating or a no-show, and the supervisor's decision

Revision ID: 0022_disputes
Revises: 0021_ticket_assignee
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import eventlog.db

revision = '0022_disputes'
down_revision = '0021_ticket_assignee'
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'dispute',
        sa.Column('id', BIG, nullable=False),
        sa.Column('ticket_id', BIG, nullable=False),
        sa.Column('merchant_id', BIG, nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('opened_by', BIG, nullable=True),
        sa.Column('opened_at', eventlog.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('decided_by', BIG, nullable=True),
        sa.Column('decided_at', eventlog.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchant.id']),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(
        'ux_dispute_ticket_kind_merchant',
        'dispute',
        ['ticket_id', 'kind', 'merchant_id'],
        unique=True,
    )
    op.create_index('ix_dispute_state', 'dispute', ['state'])
    op.create_index('ix_dispute_merchant', 'dispute', ['merchant_id'])


def downgrade() -> None:
    op.drop_index('ix_dispute_merchant', table_name='dispute')
    op.drop_index('ix_dispute_state', table_name='dispute')
    op.drop_index('ux_dispute_ticket_kind_merchant', table_name='dispute')
    op.drop_table('dispute')
