"""Offline end to end: the real server, a real Mosquitto stopped and started under a
station, the station's outbox replayed when the broker returns, and after a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import Library
from kiosk.config import StationConfig
from kiosk.link import MqttLink
from kiosk.offline import StoreAndForward
from kiosk.session import ItemBorrowed, ItemReturned, Outcome, PatronIdentified, Session, SessionEnded
from server import db
from server.models import LedgerEntry
from station_parts import wait_for
from thuvien.broker import MosquittoBroker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mosquitto() -> Iterator[MosquittoBroker]:
    # A broker of this module's own: the tests kill it, and others must not notice.
    broker = MosquittoBroker()
    broker.start()
    yield broker
    broker.stop()


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[Outcome] = []

    def on_outcome(self, outcome: Outcome) -> None:
        self.seen.append(outcome)


class Ticking:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 5  # each read a few seconds after the last: no scanner repeats
        return self.now


def _station_config(library: Library, tmp_path: Path, station: str = "kiosk-1") -> StationConfig:
    return StationConfig.model_validate({
        "site": library.config.site, "station": station,
        "mqtt": {"host": "127.0.0.1", "port": library.broker.port},
        "session": {"request_timeout_s": 3},
        "offline": {"mode": "returns_and_checkouts", "outbox_path": str(tmp_path / station / "outbox.db"),
                    "drain_wait_s": 2, "retry_max_s": 2},
    })


def _start_station(config: StationConfig) -> tuple[MqttLink, StoreAndForward]:
    link = MqttLink(config.site, config.station, config.kind, config.mqtt,
                    request_timeout=config.session.request_timeout_s)
    forward = StoreAndForward.from_config(config, link)
    link.start(wait=10)
    forward.start()
    return link, forward


def _ledger(library: Library) -> list[LedgerEntry]:
    with db.session_factory(library.server.engine)() as session:
        return list(session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))


def test_a_kiosk_lends_and_takes_back_offline_and_the_outbox_replays_once(
        library: Library, tmp_path: Path) -> None:
    config = _station_config(library, tmp_path)
    link, forward = _start_station(config)
    outcomes = Outcomes()
    session = Session(forward, config.session, outcomes, clock=Ticking())
    try:
        assert link.connected.is_set()
        session.scan("HS-2025-0001")
        assert isinstance(outcomes.seen[-1], PatronIdentified) and not outcomes.seen[-1].offline
        session.scan("TN00001")
        lent = outcomes.seen[-1]
        assert isinstance(lent, ItemBorrowed) and not lent.offline
        session.done()

        library.broker.kill()
        assert wait_for(lambda: not link.connected.is_set(), 10)
        session.scan("HS-2025-0001")
        hello = outcomes.seen[-1]
        assert isinstance(hello, PatronIdentified) and hello.offline and hello.name == ""
        session.scan("TN00002")
        borrowed = outcomes.seen[-1]
        assert isinstance(borrowed, ItemBorrowed) and borrowed.offline and borrowed.due is None
        session.start_return()
        ended = outcomes.seen[-2]
        assert isinstance(ended, SessionEnded) and ended.offline_borrowed == ("TN00002",)
        session.scan("TN00001")
        returned = outcomes.seen[-1]
        assert isinstance(returned, ItemReturned) and returned.offline
        session.done()
        queued = [q.request for q in forward.outbox.pending()]
        assert [(r.op.value, r.args.item) for r in queued] == [  # type: ignore[union-attr]
            ("loan.checkout", "TN00002"), ("loan.return", "TN00001")]
        assert len(_ledger(library)) == 1  # only the loan made online

        library.broker.restart()
        assert wait_for(lambda: len(forward.outbox) == 0, 60), "the outbox was not replayed"
    finally:
        forward.stop()
        link.stop()
        forward.close()

    ledger = _ledger(library)
    by_id = {entry.request_id: entry for entry in ledger}
    assert len(ledger) == 3 and len(by_id) == 3  # each entry exactly once
    for request in queued:
        entry = by_id[request.id]
        assert entry.offline
        # The station's time, not the replay's: aware datetimes compare as instants.
        assert entry.station_at.tzinfo is not None and entry.station_at == request.at
        assert entry.station == "kiosk-1"
    assert [by_id[r.id].op for r in queued] == ["checkout", "return"]


_KILLED_STATION = textwrap.dedent("""
    import sys, time
    from kiosk.config import StationConfig
    from kiosk.link import MqttLink
    from kiosk.offline import StoreAndForward
    from kiosk.session import ItemReturned, Session

    config = StationConfig.model_validate_json(sys.argv[1])
    link = MqttLink(config.site, config.station, config.kind, config.mqtt)
    forward = StoreAndForward.from_config(config, link)
    link.start(wait=0)  # the broker is down: the station serves offline from the start

    class Say:
        def on_outcome(self, outcome):
            if isinstance(outcome, ItemReturned) and outcome.offline:
                print("told", outcome.item, flush=True)

    session = Session(forward, config.session, Say())
    session.start_return()
    for item in sys.argv[2:]:
        session.scan(item)
    time.sleep(60)
""")


def test_a_station_killed_with_a_full_outbox_replays_it_at_its_next_start(
        library: Library, tmp_path: Path) -> None:
    library.lend("TN00001")
    library.lend("TN00002")
    config = _station_config(library, tmp_path, station="returnbox-1")
    library.broker.kill()
    child = subprocess.Popen([sys.executable, "-c", _KILLED_STATION, config.model_dump_json(),
                              "TN00001", "TN00002"],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout is not None
    try:
        told = [child.stdout.readline().split()[1] for _ in range(2)]
        child.send_signal(signal.SIGKILL)  # right after the reader was told
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert told == ["TN00001", "TN00002"]

    library.broker.restart()
    assert wait_for(lambda: library.server.service.connected.is_set(), 40)
    link, forward = _start_station(config)  # the station's next start
    try:
        assert wait_for(lambda: len(forward.outbox) == 0, 60), "the outbox was not replayed"
    finally:
        forward.stop()
        link.stop()
        forward.close()
    returns = [e for e in _ledger(library) if e.offline]
    assert len(returns) == 2
    assert {e.station for e in returns} == {"returnbox-1"}
    time.sleep(0.2)
    assert len(_ledger(library)) == 4  # two loans, two returns, nothing doubled
