"""Fixtures: the sample library on a real, migrated SQLite file, and a clock the tests move."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import protocol
from server.circulation import Circulation
from server.config import ServerConfig
from server.db import make_engine, session_factory, upgrade

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


@pytest.fixture
def library(tmp_path: Any, _seeded_file: bytes) -> Iterator[Library]:
    path = tmp_path / "thuvien.db"
    path.write_bytes(_seeded_file)
    url = f"sqlite:///{path}"
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
