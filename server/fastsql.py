"""SQLAlchemy Core statements compiled once per dialect, run straight on a DBAPI cursor.

The circulation core runs a handful of fixed statements per request. Through
`Connection.execute` each of them cost ~50-70 µs of SQLAlchemy's own Python (cache
key, execution context, events, result object) around 3-10 µs of SQLite work, and a
pool check-out plus `begin()` ~50 µs more per transaction: together more than the SQL
and the rules. Here each statement is still *written* in Core and *compiled by
SQLAlchemy for the engine's dialect* (SQL text, paramstyle, bind casts, RETURNING), and
the dialect's own type processors still convert values both ways (aware UTC datetimes
to naive UTC through `UtcDateTime`, dates, booleans, JSON), so the same code runs on
SQLite and on PostgreSQL; only the per-execution machinery is skipped:

- `Statement`: one compiled statement; `all()` / `execute()` / `inserted_key()` take a
  DBAPI cursor and a dict of parameters, and raise SQLAlchemy's exceptions
  (`IntegrityError`, ...) wrapped around the driver's, as `Connection.execute` would.
- `HeldConnection`: one DBAPI connection kept out of the engine's pool for the life of
  its owner, used by one thread at a time, with `transaction()` doing what
  `engine.begin()` does (`server.db.begin_statement`, the dialect's `do_commit` /
  `do_rollback`). A connection found dead is invalidated; the next transaction takes a
  fresh one from the pool (which pings it first where the engine says so).

Not supported, and refused at compile time: statements whose SQL is only finished at
execution (expanding IN, `literal_execute`), and executemany.
"""

from __future__ import annotations

import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, event, exc
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement, Insert

from server.db import begin_statement

Processor = Callable[[Any], Any]


def _dbapi_error(dialect: Dialect) -> type[Exception]:
    return dialect.loaded_dbapi.Error  # type: ignore[no-any-return]


def _wrap(error: Exception, sql: str | None, params: Any, dialect: Dialect) -> BaseException:
    """The driver's error as SQLAlchemy raises it (`IntegrityError`, `OperationalError`, ...)."""
    return exc.DBAPIError.instance(sql, params, error, _dbapi_error(dialect), dialect=dialect)


class Statement:
    """One Core statement compiled for one dialect; executed on a DBAPI cursor.

    Parameters are given by bind name as a dict, as to `Connection.execute`; an INSERT
    compiled with `column_keys` takes the column names. Rows come back as named tuples
    (attribute access and `_asdict()`, like SQLAlchemy's `Row`), their values through
    the dialect's result processors.
    """

    __slots__ = ("sql", "_dialect", "_dbapi_error", "_names", "_get", "_processors",
                 "_defaults", "_keys", "_row", "_types", "_results", "_returns_key")

    def __init__(self, statement: ClauseElement, dialect: Dialect, *,
                 column_keys: Sequence[str] | None = None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys or ()) or None)
        if compiled.literal_execute_params or compiled.post_compile_params:  # type: ignore[attr-defined]
            raise ValueError("statements finished at execution time (expanding IN, "
                             "literal_execute) are not supported")
        self.sql: str = compiled.string
        self._dialect = dialect
        self._dbapi_error = _dbapi_error(dialect)
        binds = compiled.binds  # type: ignore[attr-defined]
        positional = bool(compiled.positional)  # type: ignore[attr-defined]
        escaped = getattr(compiled, "escaped_bind_names", None) or {}
        order = compiled.positiontup if positional else list(binds)  # type: ignore[attr-defined]
        # The driver's parameters, in SQL order: the caller's values picked by one
        # itemgetter, then the dialect's bind processors where a type has one; named
        # paramstyles (psycopg) take them as a dict keyed by the names in the SQL.
        keys = [binds[name].key for name in order]
        get = itemgetter(*keys) if keys else (lambda _values: ())
        self._get = get if len(keys) != 1 else (lambda values: (get(values),))
        self._processors: tuple[tuple[int, Processor], ...] = tuple(
            (index, process) for index, name in enumerate(order)
            if (process := binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            is not None)
        self._names = None if positional else tuple(escaped.get(name, name) for name in order)
        # Literal values in the statement itself (`column == 5`) travel as binds too.
        if any(bind.callable is not None for bind in binds.values()):
            raise ValueError("bindparam(callable_=...) is not supported")
        self._defaults = {bind.key: bind.value for bind in binds.values() if not bind.required}
        # Columns of an INSERT / UPDATE left out of `column_keys` that have a default:
        # SQLAlchemy computes those per execution; plain values are taken here once.
        for column in (*compiled.insert_prefetch, *compiled.update_prefetch):  # type: ignore[attr-defined]
            default = column.default if compiled.isinsert else column.onupdate  # type: ignore[attr-defined]
            if default is None or not default.is_scalar:
                raise ValueError(f"give a value for {column}: only plain defaults are supported")
            self._defaults[column.key] = default.arg
        columns = list(statement.exported_columns) \
            if getattr(statement, "is_select", False) or compiled.returning else []  # type: ignore[attr-defined]
        self._keys = tuple(column.key for column in columns)
        if len(set(self._keys)) != len(self._keys):
            raise ValueError(f"label the columns of duplicate names: {self._keys}")
        self._row = namedtuple("Row", self._keys, rename=False) if self._keys else None  # type: ignore[misc]
        # Result processors are looked up at the first execution, with the driver's
        # type codes from cursor.description, as SQLAlchemy does.
        self._results: tuple[tuple[int, Processor], ...] | None = None
        self._returns_key = isinstance(statement, Insert) and bool(compiled.returning)  # type: ignore[attr-defined]
        self._types = [column.type for column in columns]  # type: ignore[attr-defined]

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """`values` as the driver takes them: in the dialect's paramstyle, processed."""
        if self._defaults:
            values = {**self._defaults, **values}
        params = self._get(values)
        if self._processors:
            params = list(params)
            for index, process in self._processors:
                params[index] = process(params[index])
        return params if self._names is None else dict(zip(self._names, params))

    def execute(self, cursor: Any, values: Mapping[str, Any]) -> Any:
        """Run on `cursor` (or a SQLAlchemy Connection); returns the DBAPI cursor."""
        if isinstance(cursor, Connection):
            cursor = cursor.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        params = self.parameters(values)
        try:
            cursor.execute(self.sql, params)
        except self._dbapi_error as error:
            raise _wrap(error, self.sql, params, self._dialect) from error
        return cursor

    def all(self, cursor: Any, values: Mapping[str, Any]) -> list[Any]:
        cursor = self.execute(cursor, values)
        try:
            rows = cursor.fetchall()
        except self._dbapi_error as error:
            raise _wrap(error, self.sql, None, self._dialect) from error
        results = self._results
        if results is None:
            results = self._results = self._result_processors(cursor.description)
        make = self._row._make  # type: ignore[union-attr]
        if not results:
            return [make(row) for row in rows]
        out = []
        for row in rows:
            row = list(row)
            for index, process in results:
                row[index] = process(row[index])
            out.append(make(row))
        return out

    def first(self, cursor: Any, values: Mapping[str, Any]) -> Any | None:
        rows = self.all(cursor, values)
        return rows[0] if rows else None

    def inserted_key(self, cursor: Any, values: Mapping[str, Any]) -> Any:
        """Run an INSERT; the generated primary key (RETURNING, or the driver's lastrowid)."""
        if self._returns_key:
            return self.all(cursor, values)[0][0]
        return self.execute(cursor, values).lastrowid

    def _result_processors(self, description: Any) -> tuple[tuple[int, Processor], ...]:
        names = tuple(str(column[0]).lower() for column in description or ())
        if names != tuple(key.lower() for key in self._keys):
            raise RuntimeError(f"the driver returned columns {names}, expected {self._keys}")
        processors = []
        for index, type_ in enumerate(self._types):
            process = type_.dialect_impl(self._dialect).result_processor(
                self._dialect, description[index][1])
            if process is not None:
                processors.append((index, process))
        return tuple(processors)


def insert_returning_key(dialect: Dialect) -> bool:
    """Whether SQLAlchemy would fetch a new primary key by RETURNING (else lastrowid)."""
    return bool(dialect.insert_returning) and (
        dialect.favor_returning_over_lastrowid or not dialect.postfetch_lastrowid)


class HeldConnection:
    """One pooled DBAPI connection, held between transactions, for one thread at a time.

        with held.transaction() as cursor:
            statement.all(cursor, {...})

    commits on a clean exit and rolls back on an exception, like `engine.begin()`,
    BEGIN included (`BEGIN IMMEDIATE` on SQLite, see server/db.py). Transactions do not
    nest. `Engine.dispose()` closes the held connection (a SQLite file's WAL is folded
    back only when its last connection closes); the next transaction takes a new one.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect
        self._dbapi_error = _dbapi_error(engine.dialect)
        self._begin = begin_statement(engine.dialect)
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._pooled: Any = None  # the pool's proxy of the DBAPI connection
        self._dbapi: Any = None
        self._cursor: Any = None
        # Weakly: a HeldConnection dropped with its owner gives its connection back to
        # the pool (SQLAlchemy's own clean-up of an unreferenced pooled connection).
        held = weakref.ref(self)

        def on_engine_disposed(_engine: Engine) -> None:
            me = held()
            if me is not None:
                me.close()

        event.listen(engine, "engine_disposed", on_engine_disposed)

    def transaction(self) -> HeldConnection:
        return self

    def __enter__(self) -> Any:
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError("transactions on a HeldConnection do not nest")
        self._lock.acquire()
        self._owner = me
        try:
            cursor = self._cursor
            if cursor is None:
                cursor = self._connect()
            if self._begin is not None:
                try:
                    cursor.execute(self._begin)
                except self._dbapi_error as error:
                    raise _wrap(error, self._begin, None, self._dialect) from error
            return cursor
        except BaseException as error:
            self._end(error)
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 _tb: TracebackType | None) -> None:
        if error is None:
            try:
                # Looked up each time: bench/circulation.py --breakdown times do_commit.
                self._dialect.do_commit(self._dbapi)
            except self._dbapi_error as failure:
                wrapped = _wrap(failure, "COMMIT", None, self._dialect)
                self._end(wrapped)
                raise wrapped from failure
            except BaseException as failure:
                self._end(failure)
                raise
            self._release()
        else:
            self._end(error)

    def _connect(self) -> Any:
        pooled = self._engine.raw_connection()
        self._pooled, self._dbapi = pooled, pooled.dbapi_connection
        self._cursor = self._dbapi.cursor()
        return self._cursor

    def _release(self) -> None:
        self._owner = None
        self._lock.release()

    def _end(self, error: BaseException) -> None:
        """Roll back after `error`; drop the connection if it is gone or unusable."""
        try:
            if self._dbapi is None:
                return
            orig = error.orig if isinstance(error, exc.DBAPIError) else error
            dead = isinstance(orig, self._dbapi_error) and \
                self._dialect.is_disconnect(orig, self._dbapi, self._cursor)  # type: ignore[arg-type]
            if not dead:
                try:
                    self._dialect.do_rollback(self._dbapi)
                except Exception:
                    dead = True
            if dead:
                if isinstance(error, exc.DBAPIError):
                    error.connection_invalidated = True
                self._drop(invalidate=True)
        finally:
            self._release()

    def _drop(self, invalidate: bool) -> None:
        pooled = self._pooled
        self._pooled = self._dbapi = self._cursor = None
        if pooled is None:
            return
        try:
            if invalidate:
                pooled.invalidate()
            else:
                # Out of the (disposed) pool and closed, not parked in it.
                pooled.detach()
                pooled.close()
        except Exception:
            pass

    def close(self) -> None:
        """Close the held connection now; a later transaction opens another."""
        with self._lock:
            self._drop(invalidate=False)


__all__ = ["HeldConnection", "Statement", "insert_returning_key"]
