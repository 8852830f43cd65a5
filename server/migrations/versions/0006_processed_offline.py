"""Whether an answered request was an offline replay: an online refusal replayed offline
(the station told its reader "recorded offline") then raises an alert, once.

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('processed_requests', sa.Column('offline', sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column('processed_requests', 'offline')
