"""The MQTT path: schools publish through a real Mosquitto as they would (QoS 1, retained
reports), the aggregate's listener stores them in a real PostgreSQL database."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select

from server import db
from server.aggregate.ingest import Ingest, read_counters
from server.aggregate.listener import UpwardListener
from server.aggregate.models import Entry
from server.aggregate.schema import make_engine
from server.aggregate.views import Filters, build_views
from thuvien.broker import MosquittoBroker

import aggregate_sample as sample
from aggregate_sample import NOW, YEAR

_ids = itertools.count(1)


@pytest.fixture
def client_id() -> str:
    # A session of each test's own on the broker.
    return f"thuvien-aggregate-test-{os.getpid()}-{next(_ids)}"


@pytest.fixture
def publisher(upper_broker: MosquittoBroker) -> Iterator[Callable[..., None]]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"school-{os.getpid()}-{next(_ids)}")
    client.connect(upper_broker.host, upper_broker.port)
    client.loop_start()

    def publish(messages: list[tuple[str, bytes, bool]]) -> None:
        infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload, retain in messages]
        for info in infos:
            info.wait_for_publish(5)

    yield publish
    # Clear what this test left retained: the next test must not see it.
    publish([(topic, b"", True) for topic, _, retain in sample.messages() if retain])
    client.disconnect()
    client.loop_stop()


def _start(engine: Engine, broker: MosquittoBroker, client_id: str, sync: bool = True,
           **changes: Any) -> UpwardListener:
    config = sample.config(str(engine.url.render_as_string(hide_password=False)), broker.port, client_id,
                           **changes)
    ingest = Ingest(engine, config)
    if sync:
        ingest.sync_schools()
    listener = UpwardListener(config, ingest, retry_seconds=0.2)
    listener.start(wait=5)
    assert listener.connected.is_set()
    return listener


def _wait_for(engine: Engine, counter: str, value: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while read_counters(engine)[counter] < value:
        assert time.monotonic() < deadline, f"{counter} stayed at {read_counters(engine)[counter]}, not {value}"
        time.sleep(0.05)


def _views(engine: Engine) -> Any:
    return build_views(db.session_factory(engine), sample.config(str(engine.url)), Filters(YEAR), NOW)


def _message_count() -> int:
    return len(sample.messages())


def test_schools_publish_and_the_province_counts_each_entry_once(
        agg_engine: Engine, upper_broker: MosquittoBroker, client_id: str,
        publisher: Callable[..., None]) -> None:
    listener = _start(agg_engine, upper_broker, client_id)
    try:
        everything = sample.messages()
        # Duplicates (a bridge resending a batch), a malformed payload, a school not in the list.
        publisher(everything)
        publisher([m for m in everything if "ledger" in m[0]][:3])
        publisher([(topic, payload, False) for topic, payload in sample.malformed()])
        _wait_for(agg_engine, "messages", _message_count() + 3 + 5)
    finally:
        listener.stop()
    counters = read_counters(agg_engine)
    assert (counters["malformed"], counters["entries_new"]) == (5, 19)
    assert counters["entries_duplicate"] == 9  # th-an-hoi's first three batches of three
    views = _views(agg_engine)
    assert {row.site: row.loans for row in views.schools} == sample.LOANS
    assert views.total.copies == 4100 and views.total.tt16 == {2: 1, 1: 1, 0: 0, None: 2}
    assert [row.site for row in views.not_reported] == [sample.C]


def test_replaying_everything_twice_gives_the_same_totals(
        agg_engine: Engine, upper_broker: MosquittoBroker, client_id: str,
        publisher: Callable[..., None]) -> None:
    listener = _start(agg_engine, upper_broker, client_id)
    try:
        publisher(sample.messages())
        _wait_for(agg_engine, "messages", _message_count())
        first = _views(agg_engine)
        publisher(sample.messages())
        publisher(sample.messages())
        _wait_for(agg_engine, "messages", 3 * _message_count())
    finally:
        listener.stop()
    again = _views(agg_engine)
    assert [(r.site, r.loans, r.copies, r.tt16_level) for r in again.schools] == \
        [(r.site, r.loans, r.copies, r.tt16_level) for r in first.schools]
    assert again.months == first.months and again.total.loans == 12
    with agg_engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Entry)) == 19


def test_the_broker_keeps_what_arrives_while_the_aggregate_is_down(
        agg_engine: Engine, upper_broker: MosquittoBroker, client_id: str,
        publisher: Callable[..., None]) -> None:
    listener = _start(agg_engine, upper_broker, client_id)
    listener.stop()  # the session stays on the broker
    publisher([m for m in sample.messages() if "ledger" in m[0]])
    listener = _start(agg_engine, upper_broker, client_id)
    try:
        _wait_for(agg_engine, "entries_new", 19)
    finally:
        listener.stop()
    assert _views(agg_engine).total.loans == 12


def test_nothing_is_acknowledged_before_it_is_stored(
        agg_url: str, agg_engine: Engine, upper_broker: MosquittoBroker, client_id: str,
        publisher: Callable[..., None]) -> None:
    # The first listener's database does not answer: it stores nothing, so it may
    # acknowledge nothing, and the broker hands everything to the next one.
    dead = make_engine(agg_url.replace("127.0.0.1:5432", "127.0.0.1:9"))
    listener = _start(dead, upper_broker, client_id, sync=False)
    try:
        publisher([m for m in sample.messages() if "ledger" in m[0]])
        time.sleep(1.0)
        assert listener.flushes == 0
    finally:
        listener.stop(timeout=5)
        dead.dispose()
    assert read_counters(agg_engine)["messages"] == 0
    listener = _start(agg_engine, upper_broker, client_id)
    try:
        _wait_for(agg_engine, "entries_new", 19)
    finally:
        listener.stop()
    assert _views(agg_engine).total.loans == 12


def test_small_batches_flush_before_the_brokers_window_fills(
        agg_engine: Engine, upper_broker: MosquittoBroker, client_id: str,
        publisher: Callable[..., None]) -> None:
    # 320 one-entry messages (20 x 16) and a 30 s timer: with acks after commit, the
    # writer must flush every `max_unacked` messages, or Mosquitto (20 in flight) stalls.
    from protocol.upward import UpwardLedgerBatch, upward_ledger

    listener = _start(agg_engine, upper_broker, client_id, ingest={"flush_seconds": 30, "max_unacked": 16})
    try:
        entries = [sample.entry(seq, "checkout", "2026-10-01 02:00") for seq in range(1, 321)]
        publisher([(upward_ledger(sample.B), UpwardLedgerBatch(site=sample.B, entries=[e]).model_dump_json()
                    .encode(), False) for e in entries])
        _wait_for(agg_engine, "entries_new", 320, timeout=10)
    finally:
        listener.stop()
    assert listener.flushes >= 320 // 16
