"""prices and consent: a merchant service's price kind and amount, a category's
needs_consent (the default catalog's self-paid repair and meal ask for it), and the
resident's consent on a ticket

Revision ID: 0023_prices
Revises: 0022_disputes
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0023_prices'
down_revision = '0022_disputes'
branch_labels = None
depends_on = None

#: the default catalog's categories that ask for consent (registry.catalog)
CONSENT_CATEGORIES = ('repair', 'meal')


def upgrade() -> None:
    with op.batch_alter_table('merchant_service') as batch:
        batch.add_column(sa.Column('price_kind', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('price_yuan', sa.Integer(), nullable=True))
    with op.batch_alter_table('service_category') as batch:
        batch.add_column(
            sa.Column('needs_consent', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    service_category = sa.table('service_category', sa.column('code'), sa.column('needs_consent'))
    op.execute(
        service_category.update()
        .where(service_category.c.code.in_(CONSENT_CATEGORIES))
        .values(needs_consent=True)
    )
    with op.batch_alter_table('ticket') as batch:
        batch.add_column(
            sa.Column('needs_consent', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column('consent_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch.add_column(sa.Column('consented_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ticket') as batch:
        batch.drop_column('consented_at')
        batch.drop_column('consent_by')
        batch.drop_column('needs_consent')
    with op.batch_alter_table('service_category') as batch:
        batch.drop_column('needs_consent')
    with op.batch_alter_table('merchant_service') as batch:
        batch.drop_column('price_yuan')
        batch.drop_column('price_kind')
