"""PostgreSQL for the tests: a database per test, in the exact state of a template built once.

`./run test` starts a PostgreSQL cluster and exports THUVIEN_TEST_PG_URL, the URL of a
role that may create databases (`postgresql+psycopg://thuvien_test:PW@127.0.0.1:5432/
postgres`). From it, `PgCluster`:

- builds a template database once per test session and per kind (`template(key,
  build)`: say, migrated and seeded with the sample library), so that migrations and PIN
  hashing are paid once;
- gives each test a database of its own (`database(template)`) holding exactly what the
  template holds. The first is `CREATE DATABASE x TEMPLATE tpl`. A clone costs 0.3-0.6 s
  (the catalogues' 8 MB written through the WAL), which over the few hundred tests that
  run on PostgreSQL was minutes, so a database a test is done with is reset instead and
  handed to the next test of that template: its other connections terminated, every
  table's rows deleted and the template's rows copied back (COPY, user triggers such as
  the ledger's append-only guard off inside that one transaction), its sequences set
  back: 10-30 ms. A test that changed the schema (a migration, a new table or trigger:
  a fingerprint of the catalogue tells) gets its database dropped, not reused;
- `database()` with no template is an empty database, always a fresh clone, dropped after;
- drops the databases a killed run left behind (their names carry the run's pid), and
  all of its own at the end (`WITH (FORCE)`, PostgreSQL 13 and later).

Without THUVIEN_TEST_PG_URL: where PostgreSQL is required (`./run test` sets
THUVIEN_REQUIRE_PG=1; CI services set CI), every PostgreSQL test FAILS, naming the cause,
so that a broken set-up can never pass as skipped tests. Elsewhere (a developer running
pytest by hand on a machine without PostgreSQL) they are skipped with the same reason,
shown by pytest's `-ra` summary, and the SQLite half of each test still runs.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import URL, make_url

try:
    import psycopg
    from psycopg import sql
except ImportError:  # said by admin_url(): the suite's SQLite half still runs
    psycopg = None  # type: ignore[assignment]

PG_URL_ENV = "THUVIEN_TEST_PG_URL"
REQUIRE_ENV = "THUVIEN_REQUIRE_PG"
# Every database made here starts with this, then the pid of the run that made it.
PREFIX = "thuvien_test_"

_USER_SCHEMAS = ("n.nspname NOT IN ('pg_catalog', 'information_schema') "
                 "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'")
# Everything a test could change in a schema: relations, columns, constraints, triggers
# (and whether they are enabled), functions. Equal fingerprints: the same schema.
_FINGERPRINT = f"""
SELECT md5(coalesce(string_agg(item, ',' ORDER BY item), '')) FROM (
  SELECT c.oid::regclass::text || ':' || c.relkind::text AS item
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_SCHEMAS}
  UNION ALL
  SELECT a.attrelid::regclass::text || '.' || a.attname || ':'
         || format_type(a.atttypid, a.atttypmod) || ':' || a.attnotnull::text || ':'
         || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE a.attnum > 0 AND NOT a.attisdropped AND {_USER_SCHEMAS}
  UNION ALL
  SELECT k.conrelid::regclass::text || '/' || k.conname || ':' || pg_get_constraintdef(k.oid)
    FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE {_USER_SCHEMAS}
  UNION ALL
  SELECT t.tgrelid::regclass::text || '/' || t.tgname || ':' || t.tgenabled::text
    FROM pg_trigger t WHERE NOT t.tgisinternal
  UNION ALL
  SELECT p.oid::regprocedure::text
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_SCHEMAS}
) items
"""


def pg_required() -> bool:
    """Whether a missing PostgreSQL is a failure (./run test, CI) rather than a skip."""
    return bool(os.environ.get(REQUIRE_ENV) or os.environ.get("CI"))


def admin_url() -> str:
    """THUVIEN_TEST_PG_URL, or fail (./run test, CI) / skip (elsewhere) saying why."""
    url = os.environ.get(PG_URL_ENV)
    if url and psycopg is not None:
        return url
    if url:
        reason = "psycopg, the PostgreSQL driver, is not installed: pip install -e '.[test]'"
    else:
        reason = (f"{PG_URL_ENV} is not set: run the tests with `./run test`, which "
                  f"installs and starts PostgreSQL and sets it")
    if pg_required():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass
class _Snapshot:
    """What a template holds, to put a used copy of it back in the same state."""

    fingerprint: str
    reusable: bool                     # False: a fresh clone each time (materialized views)
    tables: list[sql.Identifier]       # parents before children (foreign keys)
    triggered: list[sql.Identifier]    # tables with triggers of their own
    rows: dict[int, bytes]             # index in `tables` -> COPY data, non-empty only
    sequences: list[tuple[str, str, int, bool]]  # schema, name, value, is_called


class PgCluster:
    """Creates, resets and drops the test databases on the server `url` points to."""

    def __init__(self, url: str) -> None:
        self._url: URL = make_url(url)
        if self._url.get_backend_name() != "postgresql":
            raise ValueError(f"{PG_URL_ENV} must be a postgresql URL, not {self._url.drivername}")
        self._run = f"{PREFIX}{os.getpid()}_"
        self._numbers = itertools.count(1)
        self._templates: dict[str, str] = {}          # key -> template database
        self._snapshots: dict[str, _Snapshot] = {}    # template database -> its state
        self._idle: dict[str, list[str]] = {}         # template -> used copies to reset
        self._made: set[str] = set()                  # every test database made
        self._check_connection()
        self.drop_stale()

    def url(self, database: str) -> str:
        """The URL of `database` on this server, password included (for engines, configs)."""
        return self._url.set(database=database).render_as_string(hide_password=False)

    def template(self, key: str, build: Callable[[str], None]) -> str:
        """The template database `key`, made by `build(url)` at the first call of the run."""
        name = self._templates.get(key)
        if name is None:
            if not re.fullmatch(r"[a-z0-9_]{1,20}", key):
                raise ValueError(f"template key {key!r}: lowercase letters, digits, _")
            name = f"{self._run}tpl_{key}"
            self._create(name, "template0")
            try:
                build(self.url(name))
                self._snapshots[name] = self._snapshot(name)
                # A clone needs the template to have no connection at all.
                self._terminate(name)
            except BaseException:
                self._drop(name)
                raise
            self._templates[key] = name
        return name

    @contextmanager
    def database(self, template: str | None = None) -> Iterator[str]:
        """A database of this test's own, holding what `template` holds (else empty); its URL.

        Whatever connections to it are left open at the end are closed."""
        if template is None:
            name = self._clone("template0")
            try:
                yield self.url(name)
            finally:
                self._drop(name)
            return
        if template not in self._snapshots:
            raise ValueError(f"{template!r} is not a template made by template()")
        name = self._reuse(template) or self._clone(template)
        clean = False
        try:
            yield self.url(name)
            clean = True
        finally:
            if clean and self._snapshots[template].reusable:
                self._idle.setdefault(template, []).append(name)
            else:
                # Raised out of the with-block: nothing half-known is handed on.
                self._drop(name)

    def close(self) -> None:
        """Drop every database of this run: the tests' own, then the templates."""
        for name in list(self._made):
            self._drop(name)
        self._idle.clear()
        for name in self._templates.values():
            self._drop(name)
        self._templates.clear()
        self._snapshots.clear()

    def drop_stale(self) -> None:
        """Drop the databases of earlier runs whose process is gone (a killed pytest)."""
        with self._admin() as connection:
            names = [row[0] for row in connection.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                [PREFIX.replace("_", "\\_") + "%"])]
        for name in names:
            match = re.match(re.escape(PREFIX) + r"(\d+)_", name)
            if match and not _alive(int(match.group(1))):
                self._drop(name)

    # --- reuse ----------------------------------------------------------------------

    def _reuse(self, template: str) -> str | None:
        """A used copy of `template` put back in the template's state, if there is one."""
        idle = self._idle.get(template)
        while idle:
            name = idle.pop()
            self._terminate(name)
            if self._reset(name, self._snapshots[template]):
                return name
            self._drop(name)
        return None

    def _snapshot(self, name: str) -> _Snapshot:
        with self._connect(name) as connection:
            fingerprint = connection.execute(_FINGERPRINT).fetchone()[0]  # type: ignore[index]
            # A materialized view holds rows that deleting and copying back do not restore.
            reusable = not connection.execute(
                "SELECT 1 FROM pg_matviews LIMIT 1").fetchone()
            tables = _tables_parents_first(connection)
            triggered = [sql.Identifier(schema, table) for schema, table in connection.execute(
                "SELECT DISTINCT n.nspname, c.relname FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal")]
            rows: dict[int, bytes] = {}
            for index, table in enumerate(tables):
                data = bytearray()
                with connection.cursor().copy(sql.SQL("COPY {} TO STDOUT").format(table)) as copy:
                    for block in copy:
                        data += block
                if data:
                    rows[index] = bytes(data)
            # A sequence never used has no last_value: set back to its start, not called.
            sequences = [(schema, sequence, start if value is None else value, value is not None)
                         for schema, sequence, value, start in connection.execute(
                             "SELECT schemaname, sequencename, last_value, start_value "
                             "FROM pg_sequences")]
        return _Snapshot(fingerprint, reusable, tables, triggered, rows, sequences)

    def _reset(self, name: str, snapshot: _Snapshot) -> bool:
        """Put `name` back in the snapshot's state; False where its schema changed."""
        with self._connect(name) as connection, connection.transaction():
            if connection.execute(_FINGERPRINT).fetchone()[0] != snapshot.fingerprint:  # type: ignore[index]
                return False
            # Owner's rights suffice for USER triggers (the foreign keys' stay on, hence
            # the order: children deleted first, parents copied back first).
            for table in snapshot.triggered:
                connection.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(table))
            for table in reversed(snapshot.tables):
                connection.execute(sql.SQL("DELETE FROM {}").format(table))
            for index, data in snapshot.rows.items():
                with connection.cursor().copy(
                        sql.SQL("COPY {} FROM STDIN").format(snapshot.tables[index])) as copy:
                    copy.write(data)
            for table in snapshot.triggered:
                connection.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(table))
            for schema, sequence, value, called in snapshot.sequences:
                connection.execute(sql.SQL("SELECT setval({}::regclass, %s, %s)").format(
                    sql.Literal(sql.Identifier(schema, sequence).as_string(connection))),
                    [value, called])
        return True

    # --- SQL ------------------------------------------------------------------------

    def _conninfo(self, database: str) -> str:
        return self._url.set(drivername="postgresql", database=database).render_as_string(
            hide_password=False)

    def _connect(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self._conninfo(database), autocommit=True)

    def _admin(self) -> psycopg.Connection[Any]:
        # CREATE / DROP DATABASE refuse to run inside a transaction: autocommit.
        return self._connect(self._url.database or "postgres")

    def _check_connection(self) -> None:
        try:
            with self._admin() as connection:
                connection.execute("SELECT 1")
        except Exception as error:
            # A set URL that does not work is always a failure, never a skip.
            pytest.fail(f"PostgreSQL at {PG_URL_ENV} "
                        f"({self._url.render_as_string(hide_password=True)}) does not "
                        f"answer: {error}", pytrace=False)

    def _clone(self, template: str) -> str:
        name = f"{self._run}{next(self._numbers)}"
        self._create(name, template)
        self._made.add(name)
        return name

    def _create(self, name: str, template: str) -> None:
        with self._admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)))

    def _drop(self, name: str) -> None:
        with self._admin() as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
        self._made.discard(name)

    def _terminate(self, name: str) -> None:
        with self._admin() as connection:
            connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = %s AND pid <> pg_backend_pid()", [name])


def _tables_parents_first(connection: psycopg.Connection[Any]) -> list[sql.Identifier]:
    """The user tables, each after the tables its foreign keys point to."""
    tables = {(schema, name): set() for schema, name in connection.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
        f"ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND {_USER_SCHEMAS}")}
    for child_schema, child, parent_schema, parent in connection.execute(
            "SELECT cn.nspname, c.relname, pn.nspname, p.relname FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace "
            "JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace "
            "WHERE k.contype = 'f'"):
        if (child_schema, child) != (parent_schema, parent):
            tables[(child_schema, child)].add((parent_schema, parent))
    ordered: list[tuple[str, str]] = []
    while tables:
        ready = sorted(table for table, parents in tables.items() if not parents - set(ordered))
        if not ready:
            raise RuntimeError(f"foreign keys in a cycle among {sorted(tables)}: "
                               "such a template cannot be reset")
        ordered += ready
        for table in ready:
            del tables[table]
    return [sql.Identifier(schema, name) for schema, name in ordered]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["PG_URL_ENV", "PgCluster", "admin_url", "pg_required"]
