"""An index on when each ledger entry happened at its station: the loan registers, the
statistics and the Today page count by it (a school year of a million entries).

Revision ID: 0008
Revises: 0007
"""

from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain CREATE INDEX, not a batch: a table copy would drop the ledger's
    # append-only triggers on SQLite.
    op.create_index(op.f('ix_ledger_entries_station_at'), 'ledger_entries', ['station_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_ledger_entries_station_at'), table_name='ledger_entries')
