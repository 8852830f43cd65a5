"""The aggregate schema: schools, upward entries, the monthly loans rollup, report
snapshots, ingest counters, and the staff web's account tables.

Revision ID: a0001
Revises:
Create Date: 2026-05-04
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import server.models

revision = "a0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agg_schools",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("commune", sa.String(length=200), nullable=True),
        sa.Column("levels", sa.String(length=100), nullable=True),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("published_name", sa.String(length=300), nullable=True),
        sa.Column("published_levels", sa.String(length=100), nullable=True),
        sa.Column("software_version", sa.String(length=40), nullable=True),
        sa.Column("first_seen_at", server.models.UtcDateTime(), nullable=True),
        sa.Column("last_message_at", server.models.UtcDateTime(), nullable=True),
        sa.Column("last_entry_at", server.models.UtcDateTime(), nullable=True),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("max_seq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("site", name=op.f("pk_agg_schools")),
    )
    op.create_table(
        "agg_entries",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("op", sa.String(length=16), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("item_kind", sa.String(length=16), nullable=False),
        sa.Column("reader_kind", sa.String(length=16), nullable=False),
        sa.Column("reader_class", sa.String(length=32), nullable=True),
        sa.Column("reader_grade", sa.SmallInteger(), nullable=True),
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("station_at", server.models.UtcDateTime(), nullable=False),
        sa.Column("server_at", server.models.UtcDateTime(), nullable=False),
        sa.Column("due", sa.Date(), nullable=True),
        sa.Column("days_late", sa.Integer(), nullable=True),
        sa.Column("offline", sa.Boolean(), nullable=False),
        sa.Column("conflict", sa.String(length=32), nullable=True),
        sa.Column("received_at", server.models.UtcDateTime(), nullable=False),
        # The only index: (site, seq) is what makes a replayed entry count once; the
        # views read the rollup, so more indexes would only slow the ingest down.
        sa.PrimaryKeyConstraint("site", "seq", name=op.f("pk_agg_entries")),
    )
    op.create_table(
        "agg_monthly_loans",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("reader_kind", sa.String(length=16), nullable=False),
        sa.Column("grade", sa.SmallInteger(), nullable=False),
        sa.Column("checkouts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", "month", "reader_kind", "grade",
                                name=op.f("pk_agg_monthly_loans")),
    )
    # The views read a school year's months for every school.
    op.create_index(op.f("ix_agg_monthly_loans_month"), "agg_monthly_loans", ["month"])
    op.create_table(
        "agg_snapshots",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("school_year", sa.Integer(), nullable=False),
        sa.Column("generated_at", server.models.UtcDateTime(), nullable=False),
        sa.Column("received_at", server.models.UtcDateTime(), nullable=False),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("copies", sa.Integer(), nullable=True),
        sa.Column("book_copies", sa.Integer(), nullable=True),
        sa.Column("students", sa.Integer(), nullable=True),
        sa.Column("loans", sa.Integer(), nullable=True),
        sa.Column("tt16_level", sa.SmallInteger(), nullable=True),
        sa.PrimaryKeyConstraint("site", "name", "school_year", name=op.f("pk_agg_snapshots")),
    )
    op.create_table(
        "agg_counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_agg_counters")),
    )

    # The staff web's accounts: the same tables as the school schema's migration 0004,
    # so server.web.accounts works here unchanged (tests compare the two).
    op.create_table(
        "staff_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", server.models.UtcDateTime(), nullable=False),
        sa.Column("password_changed_at", server.models.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_users")),
        sa.UniqueConstraint("name", name=op.f("uq_staff_users_name")),
    )
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", server.models.UtcDateTime(), nullable=False),
        sa.Column("expires_at", server.models.UtcDateTime(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["staff_users.id"],
                                name=op.f("fk_staff_sessions_user_id_staff_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_sessions_token_hash")),
    )
    op.create_index(op.f("ix_staff_sessions_user_id"), "staff_sessions", ["user_id"])
    op.create_index(op.f("ix_staff_sessions_expires_at"), "staff_sessions", ["expires_at"])
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", server.models.UtcDateTime(), nullable=False),
        sa.Column("locked_until", server.models.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
    op.drop_index(op.f("ix_staff_sessions_expires_at"), table_name="staff_sessions")
    op.drop_index(op.f("ix_staff_sessions_user_id"), table_name="staff_sessions")
    op.drop_table("staff_sessions")
    op.drop_table("staff_users")
    op.drop_table("agg_counters")
    op.drop_table("agg_snapshots")
    op.drop_index(op.f("ix_agg_monthly_loans_month"), table_name="agg_monthly_loans")
    op.drop_table("agg_monthly_loans")
    op.drop_table("agg_entries")
    op.drop_table("agg_schools")
