"""Engine and sessions, and the schema migrations (Alembic) behind `thuvien db upgrade`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, sqlite_synchronous: str = "FULL") -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # The sqlite3 module's own transaction handling is switched off so that
        # SQLAlchemy's BEGIN is the only one (pysqlite's documented workaround).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    begin = begin_statement(engine.dialect)

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # type: ignore[no-untyped-def]
        # A read-only session (reports) begins deferred: under WAL it reads one snapshot
        # and never holds the write lock, so the stations' writes do not wait for it.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else begin)

    return engine


def begin_statement(dialect: Dialect) -> str | None:
    """The SQL that opens a transaction on `dialect`, or None where the driver does.

    On SQLite, IMMEDIATE takes the write lock up front: two servers (or a CLI import)
    racing on one file wait for each other instead of failing half-way with
    SQLITE_BUSY. The engine's "begin" event above and `server.fastsql.HeldConnection`
    both use it. psycopg opens a transaction itself at the first statement.
    """
    return "BEGIN IMMEDIATE" if dialect.name == "sqlite" else None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


READ_ONLY = "thuvien_read_only"


def one_writer_at_a_time(session: Session, table: str) -> None:
    """Queue this transaction behind any other that called this for `table`, until commit.

    For the librarian's numbered records (a receipt's, a decision's, a stocktake's
    running number is max + 1): SQLite's BEGIN IMMEDIATE already runs writers one at a
    time; on PostgreSQL two would read the same max and collide on the unique number.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql(f'LOCK TABLE "{table}" IN SHARE ROW EXCLUSIVE MODE')


def read_only(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions like `sessions` that only read: long reports (registers, statistics) on
    SQLite then take no write lock. Writing through them is a bug, not prevented here."""
    bind = sessions.kw["bind"]
    return sessionmaker(bind.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`, creating it if needed."""
    from alembic import command

    make_engine(url).dispose()  # creates the SQLite file's folder
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
