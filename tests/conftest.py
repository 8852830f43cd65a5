"""Fixtures shared by the whole suite: a real Mosquitto on a free port."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

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
