"""The librarian's records: receipts (phiếu nhập) and ĐKCB counters, weeding decisions,
stocktakes and their scans; copies point to their receipt and withdrawal; titles say
whether they are books or teaching equipment.

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa

import server.models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# (column, referred table): copies gain these with a foreign key each.
_COPY_LINKS = (('receipt_id', 'receipts'), ('withdrawal_id', 'withdrawals'))


def upgrade() -> None:
    op.create_table('receipts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('receipt_no', sa.String(length=32), nullable=False),
    sa.Column('received_on', sa.Date(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('source_detail', sa.String(length=200), nullable=True),
    sa.Column('note', sa.String(length=300), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', server.models.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_receipts')),
    sa.UniqueConstraint('number', name=op.f('uq_receipts_number'))
    )
    op.create_index(op.f('ix_receipts_received_on'), 'receipts', ['received_on'], unique=False)
    op.create_table('accession_counters',
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('kind', name=op.f('pk_accession_counters'))
    )
    op.create_table('withdrawals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('decision_no', sa.String(length=64), nullable=False),
    sa.Column('decided_on', sa.Date(), nullable=False),
    sa.Column('note', sa.String(length=300), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', server.models.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_withdrawals')),
    sa.UniqueConstraint('number', name=op.f('uq_withdrawals_number'))
    )
    op.create_table('stocktakes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('started_at', server.models.UtcDateTime(), nullable=False),
    sa.Column('started_by', sa.String(length=64), nullable=True),
    sa.Column('closed_at', server.models.UtcDateTime(), nullable=True),
    sa.Column('closed_by', sa.String(length=64), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stocktakes')),
    sa.UniqueConstraint('number', name=op.f('uq_stocktakes_number'))
    )
    op.create_table('stocktake_scans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stocktake_id', sa.Integer(), nullable=False),
    sa.Column('copy_id', sa.Integer(), nullable=False),
    sa.Column('shelf', sa.String(length=100), nullable=True),
    sa.Column('station', sa.String(length=64), nullable=True),
    sa.Column('at', server.models.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['copy_id'], ['copies.id'],
                            name=op.f('fk_stocktake_scans_copy_id_copies')),
    sa.ForeignKeyConstraint(['stocktake_id'], ['stocktakes.id'],
                            name=op.f('fk_stocktake_scans_stocktake_id_stocktakes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stocktake_scans')),
    sa.UniqueConstraint('stocktake_id', 'copy_id', name=op.f('uq_stocktake_scans_stocktake_id'))
    )
    op.create_index(op.f('ix_stocktake_scans_stocktake_id'), 'stocktake_scans', ['stocktake_id'],
                    unique=False)

    # Plain ADD COLUMNs, never a batch (table copy): a copy of `titles` or `copies` would
    # drop the catalogue search's triggers on SQLite.
    op.add_column('titles', sa.Column('material', sa.String(length=16), server_default='book',
                                      nullable=False))
    sqlite = op.get_bind().dialect.name == 'sqlite'
    for column, table in _COPY_LINKS:
        if sqlite:
            # SQLite takes a foreign key only inline in ADD COLUMN.
            op.execute(f'ALTER TABLE copies ADD COLUMN {column} INTEGER REFERENCES {table} (id)')
        else:
            op.add_column('copies', sa.Column(column, sa.Integer(), nullable=True))
            op.create_foreign_key(op.f(f'fk_copies_{column}_{table}'), 'copies', table, [column], ['id'])
        op.create_index(op.f(f'ix_copies_{column}'), 'copies', [column], unique=False)
    op.add_column('copies', sa.Column('withdrawal_reason', sa.String(length=32), nullable=True))
    op.add_column('copies', sa.Column('note', sa.String(length=300), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        # SQLite cannot drop a column that holds a foreign key, so `copies` is rebuilt
        # (batch). The triggers on it, and those that read it (the catalogue search's),
        # would stop the rename half-way: they are dropped and put back as they were.
        triggers = list(bind.execute(sa.text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND (tbl_name = 'copies' OR sql LIKE '%copies%')")))
        for name, _sql in triggers:
            op.execute(f'DROP TRIGGER {name}')
        with op.batch_alter_table('copies', recreate='always') as batch_op:
            for column, _table in reversed(_COPY_LINKS):
                batch_op.drop_index(op.f(f'ix_copies_{column}'))
            for column in ('note', 'withdrawal_reason', 'withdrawal_id', 'receipt_id'):
                batch_op.drop_column(column)
        for _name, sql in triggers:
            op.execute(sql)
    else:
        op.drop_column('copies', 'note')
        op.drop_column('copies', 'withdrawal_reason')
        for column, table in reversed(_COPY_LINKS):
            op.drop_index(op.f(f'ix_copies_{column}'), table_name='copies')
            op.drop_constraint(op.f(f'fk_copies_{column}_{table}'), 'copies', type_='foreignkey')
            op.drop_column('copies', column)
    op.drop_column('titles', 'material')
    op.drop_index(op.f('ix_stocktake_scans_stocktake_id'), table_name='stocktake_scans')
    op.drop_table('stocktake_scans')
    op.drop_table('stocktakes')
    op.drop_table('withdrawals')
    op.drop_index(op.f('ix_receipts_received_on'), table_name='receipts')
    op.drop_table('receipts')
    op.drop_table('accession_counters')
