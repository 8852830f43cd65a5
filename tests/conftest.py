"""Fixtures shared by the whole suite: a real Mosquitto on a free port, a real PostgreSQL."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from pg import PgCluster, admin_url
from thuvien.broker import MosquittoBroker

_sites = itertools.count(1)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker()
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def site() -> str:
    """A site of its own for each test, so retained messages never leak between tests."""
    return f"test-{os.getpid()}-{next(_sites)}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    """The PostgreSQL server of THUVIEN_TEST_PG_URL (tests/pg.py: fails or skips without)."""
    cluster = PgCluster(admin_url())
    yield cluster
    cluster.close()


@pytest.fixture
def pg_url(postgres: PgCluster) -> Iterator[str]:
    """The URL of an empty PostgreSQL database of this test's own, dropped after it."""
    with postgres.database() as url:
        yield url
