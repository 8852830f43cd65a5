"""What stations report: their events (deduped by id), alerts for the staff, gate visits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 22:03:33.258798
"""

from alembic import op
import sqlalchemy as sa

import server.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('station_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('station', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('at', server.models.UtcDateTime(), nullable=False),
    sa.Column('received_at', server.models.UtcDateTime(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_station_events')),
    sa.UniqueConstraint('station', 'event_id', name='uq_station_events_station_event_id')
    )
    with op.batch_alter_table('station_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_station_events_received_at'), ['received_at'], unique=False)

    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.String(length=128), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('station', sa.String(length=64), nullable=True),
    sa.Column('at', server.models.UtcDateTime(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
    sa.Column('acknowledged_at', server.models.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['station_events.id'], name=op.f('fk_alerts_event_id_station_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('alert_id', name=op.f('uq_alerts_alert_id'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_at'), ['at'], unique=False)
        batch_op.create_index('ix_alerts_open', ['acknowledged_at', 'station', 'type'], unique=False)

    op.create_table('visits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('station', sa.String(length=64), nullable=False),
    sa.Column('since', server.models.UtcDateTime(), nullable=False),
    sa.Column('until', server.models.UtcDateTime(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['station_events.id'], name=op.f('fk_visits_event_id_station_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visits')),
    sa.UniqueConstraint('event_id', name=op.f('uq_visits_event_id'))
    )
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visits_since'), ['since'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visits_since'))

    op.drop_table('visits')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_open')
        batch_op.drop_index(batch_op.f('ix_alerts_at'))

    op.drop_table('alerts')
    with op.batch_alter_table('station_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_station_events_received_at'))

    op.drop_table('station_events')
