"""The aggregate database's schema: Alembic, with its own scripts
(server/aggregate/migrations) and its own version table (`aggregate_alembic_version`).

Why Alembic rather than create_all and a version row: a province's database holds years
of every school's entries; the schema will change under that data (a new figure taken
out of the snapshots, a new rollup), and Alembic's scripts are how the school schema
already does it (`thuvien db upgrade`): one way of working for both.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from server import db

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "aggregate_alembic_version"

__all__ = ["MIGRATIONS", "VERSION_TABLE", "alembic_config", "current_revision", "head_revision",
           "make_engine", "upgrade"]


def make_engine(url: str) -> Engine:
    # The school server's engine settings (SQLite pragmas for tests, pre-ping on PostgreSQL).
    return db.make_engine(url, "NORMAL")


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the aggregate database at `url` to `revision`, creating its tables if needed."""
    from alembic import command

    make_engine(url).dispose()
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
