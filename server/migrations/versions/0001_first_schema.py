"""First schema: readers, titles, copies, current loans, the append-only ledger.

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 19:41:07.364454
"""

from alembic import op
import sqlalchemy as sa

import server.models


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('processed_requests',
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('station', sa.String(length=64), nullable=False),
    sa.Column('op', sa.String(length=32), nullable=False),
    sa.Column('reply', sa.JSON(), nullable=False),
    sa.Column('server_at', server.models.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_processed_requests'))
    )
    op.create_table('readers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('moet_id', sa.String(length=16), nullable=True),
    sa.Column('card_uid', sa.String(length=64), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('class_name', sa.String(length=32), nullable=True),
    sa.Column('grade', sa.Integer(), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('gender', sa.String(length=8), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('block_reason', sa.String(length=200), nullable=True),
    sa.Column('pin_hash', sa.String(length=200), nullable=True),
    sa.Column('created_at', server.models.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_readers')),
    sa.UniqueConstraint('card_uid', name=op.f('uq_readers_card_uid')),
    sa.UniqueConstraint('code', name=op.f('uq_readers_code')),
    sa.UniqueConstraint('moet_id', name=op.f('uq_readers_moet_id'))
    )
    with op.batch_alter_table('readers', schema=None) as batch_op:
        batch_op.create_index('ix_readers_class', ['class_name'], unique=False)

    op.create_table('titles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('author', sa.String(length=300), nullable=True),
    sa.Column('publisher', sa.String(length=200), nullable=True),
    sa.Column('year', sa.Integer(), nullable=True),
    sa.Column('isbn', sa.String(length=17), nullable=True),
    sa.Column('subject', sa.String(length=200), nullable=True),
    sa.Column('call_number', sa.String(length=64), nullable=True),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_titles'))
    )
    with op.batch_alter_table('titles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_titles_isbn'), ['isbn'], unique=False)

    op.create_table('copies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title_id', sa.Integer(), nullable=False),
    sa.Column('accession_number', sa.String(length=32), nullable=False),
    sa.Column('barcode', sa.String(length=64), nullable=True),
    sa.Column('rfid_item_id', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('location', sa.String(length=100), nullable=True),
    sa.Column('price', sa.BigInteger(), nullable=True),
    sa.Column('acquired_on', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['title_id'], ['titles.id'], name=op.f('fk_copies_title_id_titles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_copies')),
    sa.UniqueConstraint('accession_number', name=op.f('uq_copies_accession_number')),
    sa.UniqueConstraint('barcode', name=op.f('uq_copies_barcode')),
    sa.UniqueConstraint('rfid_item_id', name=op.f('uq_copies_rfid_item_id'))
    )
    with op.batch_alter_table('copies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_copies_title_id'), ['title_id'], unique=False)

    op.create_table('ledger_entries',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('op', sa.String(length=16), nullable=False),
    sa.Column('copy_id', sa.Integer(), nullable=False),
    sa.Column('reader_id', sa.Integer(), nullable=False),
    sa.Column('station', sa.String(length=64), nullable=False),
    sa.Column('station_at', server.models.UtcDateTime(), nullable=False),
    sa.Column('server_at', server.models.UtcDateTime(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=True),
    sa.Column('days_late', sa.Integer(), nullable=True),
    sa.Column('offline', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['copy_id'], ['copies.id'], name=op.f('fk_ledger_entries_copy_id_copies')),
    sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], name=op.f('fk_ledger_entries_reader_id_readers')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_ledger_entries'))
    )
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_entries_copy_id'), ['copy_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entries_reader_id'), ['reader_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entries_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entries_server_at'), ['server_at'], unique=False)

    op.create_table('loans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('copy_id', sa.Integer(), nullable=False),
    sa.Column('reader_id', sa.Integer(), nullable=False),
    sa.Column('loaned_at', server.models.UtcDateTime(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('renewals', sa.Integer(), nullable=False),
    sa.Column('long_loan', sa.Boolean(), nullable=False),
    sa.Column('checkout_seq', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['checkout_seq'], ['ledger_entries.seq'], name=op.f('fk_loans_checkout_seq_ledger_entries')),
    sa.ForeignKeyConstraint(['copy_id'], ['copies.id'], name=op.f('fk_loans_copy_id_copies')),
    sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], name=op.f('fk_loans_reader_id_readers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loans')),
    sa.UniqueConstraint('copy_id', name=op.f('uq_loans_copy_id'))
    )
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loans_due_on'), ['due_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_loans_reader_id'), ['reader_id'], unique=False)

    _append_only("ledger_entries")


def _append_only(table: str) -> None:
    """Refuse UPDATE and DELETE on the ledger in the database itself, not only in code."""
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    elif op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{table} is append-only'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
        )



def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
    elif op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_append_only()")
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_loans_reader_id'))
        batch_op.drop_index(batch_op.f('ix_loans_due_on'))

    op.drop_table('loans')
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entries_server_at'))
        batch_op.drop_index(batch_op.f('ix_ledger_entries_request_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_entries_reader_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_entries_copy_id'))

    op.drop_table('ledger_entries')
    with op.batch_alter_table('copies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_copies_title_id'))

    op.drop_table('copies')
    with op.batch_alter_table('titles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_titles_isbn'))

    op.drop_table('titles')
    with op.batch_alter_table('readers', schema=None) as batch_op:
        batch_op.drop_index('ix_readers_class')

    op.drop_table('readers')
    op.drop_table('processed_requests')
