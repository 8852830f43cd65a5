"""Fixtures of the aggregate server's tests: a migrated PostgreSQL database of each
test's own (cloned from a template migrated once, tests/pg.py) and a Mosquitto of this
folder's own, so no other test's retained upward messages reach these listeners."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from pg import PgCluster
from server.aggregate import schema
from thuvien.broker import MosquittoBroker


@pytest.fixture
def agg_url(postgres: PgCluster) -> Iterator[str]:
    template = postgres.template("aggregate", schema.upgrade)
    with postgres.database(template) as url:
        yield url


@pytest.fixture
def agg_engine(agg_url: str) -> Iterator[Engine]:
    engine = schema.make_engine(agg_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def upper_broker() -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker()
    broker.start()
    yield broker
    broker.stop()
