"""Offline replays and station identity: the ledger's conflict mark, registered stations.

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa

import server.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, not a batch (table copy): the copy would drop the triggers that
    # keep the ledger append-only on SQLite.
    op.add_column('ledger_entries', sa.Column('conflict', sa.String(length=32), nullable=True))
    op.create_table('stations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('registered_at', server.models.UtcDateTime(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stations')),
    sa.UniqueConstraint('name', name=op.f('uq_stations_name'))
    )


def downgrade() -> None:
    op.drop_table('stations')
    # SQLite can drop a column in place since 3.35 (no table copy, the triggers stay).
    op.drop_column('ledger_entries', 'conflict')
