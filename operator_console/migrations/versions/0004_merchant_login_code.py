"""merchant one-time login codes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import eventlog.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('merchant_login_code',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('phone_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', eventlog.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', eventlog.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchant.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('merchant_login_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_login_code_merchant_id'), ['merchant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_merchant_login_code_phone_hash'), ['phone_hash'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('merchant_login_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchant_login_code_phone_hash'))
        batch_op.drop_index(batch_op.f('ix_merchant_login_code_merchant_id'))
    op.drop_table('merchant_login_code')
