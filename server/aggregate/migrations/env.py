"""Alembic environment of the aggregate database (`thuvien aggregate db upgrade`), kept
apart from the school schema's: its own scripts and its own version table, so a school
database and an aggregate database can never be migrated with each other's scripts."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from server.aggregate.models import AggregateBase

VERSION_TABLE = "aggregate_alembic_version"

config = context.config
target_metadata = AggregateBase.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, version_table=VERSION_TABLE, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          version_table=VERSION_TABLE,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
