"""A small key/value table of the server's own state: the upward publisher keeps its
cursor there (the last ledger seq the local broker acknowledged), so nothing is lost
and little is resent after a restart.

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa

import server.models


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'server_state',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('value', sa.String(length=200), nullable=False),
        sa.Column('updated_at', server.models.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_server_state')),
    )


def downgrade() -> None:
    op.drop_table('server_state')
