"""Fixtures: the sample library on a real, migrated database, and a clock the tests move.

`library` (and so `circulation`, `ask` and every fixture built on them) is parametrized:
each test runs once on a SQLite file and once on a PostgreSQL database of its own
(tests/pg.py), both starting from the same migrated and seeded sample library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import protocol
from server.circulation import Circulation
from server.config import ServerConfig
from server.db import make_engine, session_factory, upgrade

from pg import PgCluster

from circulation_sample import WallClock, Library, local, make_config, make_request, seed


@pytest.fixture(scope="session")
def _seeded_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    # Migrating and hashing a PIN once per session keeps each test to a file copy.
    path = tmp_path_factory.mktemp("seed") / "thuvien.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    seed(session_factory(engine))
    engine.dispose()  # the last connection to close folds the WAL into the file
    assert not path.with_name(path.name + "-wal").exists()
    return path.read_bytes()


@pytest.fixture(scope="session")
def _seeded_pg_template(postgres: PgCluster) -> str:
    """The same seeded library as `_seeded_file`, as a PostgreSQL template database."""

    def build(url: str) -> None:
        upgrade(url)
        engine = make_engine(url)
        seed(session_factory(engine))
        engine.dispose()

    return postgres.template("server_library", build)


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Library]:
    if request.param == "sqlite":
        path = tmp_path / "thuvien.db"
        path.write_bytes(request.getfixturevalue("_seeded_file"))
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        yield Library(url=url, engine=engine, sessions=session_factory(engine))
        engine.dispose()
        return
    # Looked up here, not declared: the SQLite half needs no PostgreSQL at all.
    template = request.getfixturevalue("_seeded_pg_template")
    postgres: PgCluster = request.getfixturevalue("postgres")
    with postgres.database(template) as url:
        engine = make_engine(url)
        yield Library(url=url, engine=engine, sessions=session_factory(engine))
        engine.dispose()


@pytest.fixture
def clock() -> WallClock:
    return WallClock(local(2026, 10, 5))  # a Monday in the first term


@pytest.fixture
def config() -> ServerConfig:
    return make_config()


@pytest.fixture
def circulation(library: Library, config: ServerConfig, clock: WallClock) -> Circulation:
    return Circulation(library.sessions, config, clock)


Ask = Callable[..., tuple[protocol.Reply, list[protocol.LedgerEntry]]]


@pytest.fixture
def ask(circulation: Circulation, clock: WallClock) -> Ask:
    """Send one request to the circulation core as station kiosk-1 would."""

    def _ask(op: str, *, request_id: str | None = None, station: str = "kiosk-1",
             offline: bool = False, via: Circulation | None = None,
             **args: Any) -> tuple[protocol.Reply, list[protocol.LedgerEntry]]:
        request = make_request(op, clock.now, request_id=request_id, offline=offline, **args)
        return (via or circulation).handle(request, station)

    return _ask
