"""The public catalogue: its search index (SQLite FTS5 kept by triggers) and reader sessions.

Revision ID: 0005
Revises: 0004

The index statements are written out here, not imported from `server.search`, so this
revision stays what it was when `server.search` changes. PostgreSQL gets no index: its
portable search folds in SQL at query time (see `server.search`).
"""

from alembic import op
import sqlalchemy as sa

import server.models


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _fold(column: str) -> str:
    # đ/Đ only: the unicode61 tokenizer folds case and every other mark itself.
    return f"replace(replace(coalesce({column}, ''), 'đ', 'd'), 'Đ', 'D')"


def _kinds(title_id: str) -> str:
    # The kinds of the title's copies that are not withdrawn (the OPAC's kind filter).
    return (f"coalesce((SELECT group_concat(kind, ' ') FROM (SELECT DISTINCT kind FROM copies "
            f"WHERE title_id = {title_id} AND status != 'withdrawn' ORDER BY kind)), '')")


def _row(prefix: str) -> str:
    return (f"{prefix}.id, {_fold(prefix + '.title')}, {_fold(prefix + '.author')}, "
            f"{_fold(prefix + '.subject')}, "
            f"replace(replace(coalesce({prefix}.isbn, ''), '-', ''), ' ', ''), "
            f"{_kinds(prefix + '.id')}")


def _refresh_kinds(title_id: str) -> str:
    return (f"UPDATE catalogue_fts SET kinds = {_kinds(title_id)} "
            f"WHERE rowid = {title_id} AND kinds IS NOT {_kinds(title_id)};")


_INSERT = "INSERT INTO catalogue_fts(rowid, title, author, subject, codes, kinds) SELECT "

SQLITE_UP = (
    "CREATE VIRTUAL TABLE catalogue_fts USING fts5(title, author, subject, codes, kinds, "
    "tokenize='unicode61 remove_diacritics 2', prefix='2 3')",
    f"CREATE TRIGGER titles_fts_insert AFTER INSERT ON titles BEGIN {_INSERT}{_row('new')}; END",
    "CREATE TRIGGER titles_fts_delete AFTER DELETE ON titles BEGIN "
    "DELETE FROM catalogue_fts WHERE rowid = old.id; END",
    "CREATE TRIGGER titles_fts_update AFTER UPDATE OF id, title, author, subject, isbn ON titles "
    f"BEGIN DELETE FROM catalogue_fts WHERE rowid = old.id; {_INSERT}{_row('new')}; END",
    f"CREATE TRIGGER copies_fts_insert AFTER INSERT ON copies BEGIN {_refresh_kinds('new.title_id')} END",
    f"CREATE TRIGGER copies_fts_delete AFTER DELETE ON copies BEGIN {_refresh_kinds('old.title_id')} END",
    "CREATE TRIGGER copies_fts_update AFTER UPDATE OF title_id, kind, status ON copies "
    "WHEN old.title_id IS NOT new.title_id OR old.kind IS NOT new.kind "
    "OR (old.status = 'withdrawn') IS NOT (new.status = 'withdrawn') "
    f"BEGIN {_refresh_kinds('old.title_id')} {_refresh_kinds('new.title_id')} END",
    f"{_INSERT}{_row('titles')} FROM titles",
)
SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS copies_fts_update",
    "DROP TRIGGER IF EXISTS copies_fts_delete",
    "DROP TRIGGER IF EXISTS copies_fts_insert",
    "DROP TRIGGER IF EXISTS titles_fts_update",
    "DROP TRIGGER IF EXISTS titles_fts_delete",
    "DROP TRIGGER IF EXISTS titles_fts_insert",
    "DROP TABLE IF EXISTS catalogue_fts",
)


def upgrade() -> None:
    op.create_table('reader_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('reader_id', sa.Integer(), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', server.models.UtcDateTime(), nullable=False),
    sa.Column('expires_at', server.models.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['reader_id'], ['readers.id'],
                            name=op.f('fk_reader_sessions_reader_id_readers'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reader_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_reader_sessions_token_hash'))
    )
    with op.batch_alter_table('reader_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reader_sessions_reader_id'), ['reader_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reader_sessions_expires_at'), ['expires_at'], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_DOWN:
            op.execute(statement)
    with op.batch_alter_table('reader_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reader_sessions_expires_at'))
        batch_op.drop_index(batch_op.f('ix_reader_sessions_reader_id'))
    op.drop_table('reader_sessions')
