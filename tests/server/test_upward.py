"""The school server's upward publisher on a real Mosquitto and a real SQLite file: every
ledger entry goes up once acknowledged, reduced to nothing personal; the cursor carries
it through a broker killed or restarted and through a server restart."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import insert, select

from circulation_sample import (
    AN,
    AN_CARD_UID,
    AN_MOET_ID,
    BINH,
    HOA,
    NV,
    TK,
    TN,
    WallClock,
    local,
    make_config,
    make_request,
    seed,
)
from kiosk.link import MqttLink
from protocol import CheckoutArgs, Op, ReturnArgs
from protocol.configfile import ConfigError, MqttConfig, load_toml
from protocol.upward import (
    UpwardLedgerBatch,
    UpwardReport,
    UpwardSchool,
    parse_upward,
    upward_filter,
    upward_report,
    upward_school,
)
from server import db
from server import stations as registry
from server.app import RunningServer, start_server
from server.config import DatabaseConfig, ServerConfig, UpwardConfig
from server.models import Copy, LedgerEntry, Reader, ServerState
from server.upward import CURSOR_KEY, pack_batches
from thuvien.broker import MosquittoBroker

SITE = "thcs-nhut-tao"
# Everything that names a person in the sample library; none of it may leave the school.
PERSONAL = [AN, BINH, HOA, AN_MOET_ID, "0123456790", AN_CARD_UID, "Nguyễn Văn An",
            "Trần Thị Bình", "Lê Thị Hoa"]


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


class Upper:
    """What the level above sees of the school: every upward message, as received."""

    def __init__(self, port: int, client_id: str, *, clean: bool = True,
                 topic: str = upward_filter(SITE)) -> None:
        self.topic = topic
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean)
        self.client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the upper client could not subscribe"

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def batches(self) -> list[UpwardLedgerBatch]:
        with self.lock:
            return [UpwardLedgerBatch.model_validate_json(payload)
                    for topic, payload, _ in self.messages if parse_upward(topic)[1] == "ledger"]

    def seqs(self) -> list[int]:
        return [entry.seq for batch in self.batches() for entry in batch.entries]

    def payloads(self, topic: str) -> list[tuple[bytes, bool]]:
        with self.lock:
            return [(payload, retain) for t, payload, retain in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class School:
    url: str
    config: ServerConfig
    clock: WallClock
    broker: MosquittoBroker
    server: RunningServer | None = None
    links: list[MqttLink] = field(default_factory=list)

    def start(self) -> RunningServer:
        self.server = start_server(self.config, clock=self.clock)
        assert self.server.upward is not None
        assert self.server.upward.connected.wait(10), "the publisher could not connect"
        return self.server

    def stop(self) -> None:
        for link in self.links:
            link.stop()
        self.links.clear()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def kiosk(self) -> MqttLink:
        link = MqttLink(SITE, "kiosk-1", "kiosk", MqttConfig(host="127.0.0.1", port=self.broker.port),
                        request_timeout=5.0)
        assert link.start(wait=10)
        self.links.append(link)
        return link

    def at_desk(self, op: str, **args: Any) -> None:
        """A loan made at the librarian's desk: straight into the database, no broker."""
        assert self.server is not None
        outcome = self.server.service.circulation.handle_request(
            make_request(op, self.clock.now, **args), "desk-1")
        assert outcome.reply.ok, outcome.reply

    def ledger(self) -> list[tuple[Any, ...]]:
        """Each entry as the upper levels should see it, from the school's own tables."""
        engine = db.make_engine(self.url)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(
                    select(LedgerEntry.seq, LedgerEntry.op, Copy.accession_number, Copy.kind,
                           Reader.kind, Reader.class_name, Reader.grade, LedgerEntry.station,
                           LedgerEntry.station_at, LedgerEntry.due_on, LedgerEntry.days_late,
                           LedgerEntry.offline, LedgerEntry.conflict)
                    .join(Copy, Copy.id == LedgerEntry.copy_id)
                    .join(Reader, Reader.id == LedgerEntry.reader_id)
                    .order_by(LedgerEntry.seq))]
        finally:
            engine.dispose()

    def stored_cursor(self) -> int | None:
        engine = db.make_engine(self.url)
        try:
            with db.session_factory(engine)() as session:
                row = session.get(ServerState, CURSOR_KEY)
                return None if row is None else int(row.value)
        finally:
            engine.dispose()


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    # A broker of this module's own, persistent as a school's is: the tests kill it.
    with MosquittoBroker(persistent=True) as started:
        yield started


@pytest.fixture
def school(tmp_path: Path, broker: MosquittoBroker) -> Iterator[School]:
    url = f"sqlite:///{tmp_path / 'thuvien.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    seed(db.session_factory(engine))
    for name, kind in (("kiosk-1", "kiosk"), ("desk-1", "desk")):
        registry.register(engine, name, kind)
    engine.dispose()
    config = make_config().model_copy(update={
        "database": DatabaseConfig(url=url),
        "mqtt": MqttConfig(host="127.0.0.1", port=broker.port),
        "upward": UpwardConfig(enabled=True, interval_s=0.2, batch_size=50,
                               commune="Phòng GD&ĐT thử nghiệm"),
    })
    built = School(url=url, config=config, clock=WallClock(local(2026, 10, 5)), broker=broker)
    yield built
    built.stop()


def _expected(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, op, item, item_kind, reader_kind, class_name, grade, station, station_at, due, late, \
        offline, conflict = row
    return {"seq": seq, "op": op, "item": item, "item_kind": item_kind, "reader_kind": reader_kind,
            "reader_class": class_name, "reader_grade": grade, "station": station,
            "station_at": station_at, "due": due, "days_late": late, "offline": offline,
            "conflict": conflict}


def test_every_entry_goes_up_reduced_and_nothing_personal(school: School) -> None:
    upper = Upper(school.broker.port, "upper-1")
    try:
        running = school.start()
        kiosk = school.kiosk()
        for patron, item in ((AN, TN[0]), (BINH, TN[1]), (HOA, NV)):
            reply = kiosk.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=patron, item=item))
            assert reply.ok, reply
        school.at_desk("loan.checkout", patron=AN, item=TK[0])
        assert kiosk.request(Op.LOAN_RETURN, ReturnArgs(item=TN[0])).ok
        school.clock.now += dt.timedelta(days=20)   # TK[0] comes back late
        school.at_desk("loan.return", item=TK[0])
        ledger = school.ledger()
        assert len(ledger) == 6
        wait_until(lambda: len(upper.seqs()) >= 6, what="six entries upward")
        entries = {entry.seq: entry for batch in upper.batches() for entry in batch.entries}
        assert sorted(entries) == [row[0] for row in ledger]
        for row in ledger:
            got = entries[row[0]].model_dump(exclude={"server_at"})
            assert got == _expected(row)
        assert entries[ledger[0][0]].reader_class == "6A1" and entries[ledger[0][0]].reader_grade == 6
        assert entries[ledger[2][0]].reader_kind == "teacher"
        assert entries[ledger[5][0]].days_late and entries[ledger[5][0]].days_late > 0
        assert all(batch.site == SITE for batch in upper.batches())

        # The snapshots of the current school year and who the school is, retained.
        for name in ("statistics", "tt16"):
            topic = upward_report(SITE, name, 2026)
            wait_until(lambda: upper.payloads(topic), what=topic)
            report = UpwardReport.model_validate_json(upper.payloads(topic)[0][0])
            assert (report.site, report.name, report.school_year) == (SITE, name, 2026)
        wait_until(lambda: upper.payloads(upward_school(SITE)), what="the school")
        school_info = UpwardSchool.model_validate_json(upper.payloads(upward_school(SITE))[0][0])
        assert school_info.school_name == "Trường THCS Nhựt Tảo"

        # Made again now, the statistics count these loans; their busiest readers went up
        # as class and count only.
        topic = upward_report(SITE, "statistics", 2026)
        before = len(upper.payloads(topic))
        running.upward.refresh_reports()
        wait_until(lambda: len(upper.payloads(topic)) > before, what="fresh snapshots")
        late = Upper(school.broker.port, "upper-late")  # a newcomer gets the retained ones
        try:
            wait_until(lambda: late.payloads(topic), what="the retained statistics")
            payload, retained = late.payloads(topic)[0]
            assert retained and payload == upper.payloads(topic)[-1][0]
            data = json.loads(payload)["data"]
            assert data["top_readers"], data
            assert all(set(row) == {"class", "loans"} for row in data["top_readers"])
            assert {"class": "6A1", "loans": 2} in data["top_readers"]
        finally:
            late.close()
        school.stop()
        with upper.lock:
            everything = b"\n".join(payload for _, payload, _ in upper.messages).decode("utf-8")
        for personal in PERSONAL:
            assert personal not in everything, personal
        assert school.stored_cursor() == ledger[-1][0]
    finally:
        upper.close()


def test_entries_lent_while_the_broker_was_killed_go_up_when_it_returns(school: School) -> None:
    # A persistent session, as a bridge has: what is published while it is away waits.
    upper = Upper(school.broker.port, "upper-bridge", clean=False)
    try:
        running = school.start()
        school.at_desk("loan.checkout", patron=AN, item=TN[0])
        school.at_desk("loan.checkout", patron=BINH, item=TN[1])
        wait_until(lambda: len(set(upper.seqs())) == 2, what="the first two entries")
        wait_until(lambda: school.stored_cursor() == school.ledger()[-1][0], what="the cursor")

        school.broker.kill()
        wait_until(lambda: not running.upward.connected.is_set(), what="the publisher to notice")
        school.at_desk("loan.return", item=TN[0])
        school.at_desk("loan.checkout", patron=HOA, item=NV)
        school.at_desk("loan.checkout", patron=AN, item=TK[0])
        time.sleep(0.5)  # a few of the publisher's rounds with no broker
        assert school.stored_cursor() == school.ledger()[1][0]

        school.broker.restart()
        ledger = school.ledger()
        assert len(ledger) == 5
        wait_until(lambda: set(upper.seqs()) == {row[0] for row in ledger}, timeout=40,
                   what="every entry after the restart")
        wait_until(lambda: school.stored_cursor() == ledger[-1][0], what="the cursor stored")
    finally:
        upper.close()


def test_what_the_broker_never_acknowledged_is_sent_again_by_the_next_server(
        school: School) -> None:
    upper = Upper(school.broker.port, "upper-bridge", clean=False)
    try:
        running = school.start()
        school.at_desk("loan.checkout", patron=AN, item=TN[0])
        wait_until(lambda: school.stored_cursor() == school.ledger()[-1][0], what="the cursor")
        acknowledged = school.stored_cursor()

        # The broker hangs: the connection stays up, the batches go out, no PUBACK comes.
        assert school.broker.pid is not None
        os.kill(school.broker.pid, signal.SIGSTOP)
        school.at_desk("loan.checkout", patron=BINH, item=TN[1])
        school.at_desk("loan.checkout", patron=HOA, item=NV)
        wait_until(lambda: running.upward.batches_published >= 2, what="the batch handed to paho")
        school.stop()  # gives up waiting for the acknowledgement
        assert school.stored_cursor() == acknowledged
        school.broker.kill()  # what it had read but not acted on dies with it
        school.broker.restart()

        school.start()
        ledger = school.ledger()
        wait_until(lambda: set(upper.seqs()) == {row[0] for row in ledger}, timeout=30,
                   what="the unacknowledged entries from the next server")
        wait_until(lambda: school.stored_cursor() == ledger[-1][0], what="the cursor stored")
    finally:
        upper.close()


def _backlog(url: str, count: int, start: dt.datetime) -> None:
    """`count` ledger entries written straight into the database (a year of lending), as
    checkouts and returns of one copy by one reader, one minute apart."""
    engine = db.make_engine(url)
    try:
        with engine.begin() as connection:
            copy_id = connection.scalar(select(Copy.id).where(Copy.accession_number == TN[4]))
            reader_id = connection.scalar(select(Reader.id).where(Reader.code == BINH))
            at = start.astimezone(dt.timezone.utc)
            connection.execute(insert(LedgerEntry), [
                {"request_id": f"backlog-{n}", "op": "checkout" if n % 2 == 0 else "return",
                 "copy_id": copy_id, "reader_id": reader_id, "station": "kiosk-1",
                 "station_at": at + dt.timedelta(minutes=n), "server_at": at + dt.timedelta(minutes=n),
                 "offline": False} for n in range(count)])
    finally:
        engine.dispose()


def test_a_backlog_survives_a_broker_restart_and_the_cursor_a_server_restart(school: School) -> None:
    _backlog(school.url, 3000, local(2026, 9, 7))
    upper = Upper(school.broker.port, "upper-backlog", clean=False)
    try:
        running = school.start()
        # Mid-way through the backlog (batches of 50, ten in flight at most), the broker goes.
        wait_until(lambda: len(upper.seqs()) >= 300, what="the backlog under way")
        assert len(set(upper.seqs())) < 3000
        school.broker.restart()
        wait_until(lambda: len(set(upper.seqs())) == 3000, timeout=60, what="the whole backlog")
        assert sorted(set(upper.seqs())) == [row[0] for row in school.ledger()]
        assert all(len(batch.entries) <= 50 for batch in upper.batches())
        wait_until(lambda: school.stored_cursor() == 3000, what="the cursor stored")
        assert running.upward.entries_published >= 3000
        school.stop()

        # A server restart resends nothing acknowledged: only what is new goes up.
        fresh = Upper(school.broker.port, "upper-fresh")
        try:
            school.start()
            school.at_desk("loan.checkout", patron=AN, item=TN[0])
            wait_until(lambda: fresh.seqs(), what="the new entry")
            time.sleep(0.5)
            assert fresh.seqs() == [3001]
        finally:
            fresh.close()
    finally:
        upper.close()


def test_entries_are_packed_under_the_payload_limit() -> None:
    from protocol import encode
    from protocol.upward import MAX_BATCH, UpwardEntry

    at = dt.datetime(2026, 10, 5, 2, 0, tzinfo=dt.timezone.utc)
    entries = [UpwardEntry(seq=n, op="checkout", item=f"TN.{n:05d}", item_kind="TN",
                           reader_kind="student", reader_class="10A12-chuyên-toán", reader_grade=10,
                           station="kiosk-thu-vien-tang-2", station_at=at, server_at=at,
                           due=at.date(), offline=True, conflict="copy_on_loan_elsewhere")
               for n in range(1, 2 * MAX_BATCH + 1)]
    batches = pack_batches(SITE, entries, MAX_BATCH, max_bytes=60 * 1024)
    # MAX_BATCH entries of this size would not fit one payload: the bytes decide.
    assert len(batches) > 2
    assert all(len(encode(batch)) <= 60 * 1024 for batch in batches)
    assert [e.seq for batch in batches for e in batch.entries] == list(range(1, 2 * MAX_BATCH + 1))
    assert [len(b.entries) for b in pack_batches(SITE, entries[:7], 3)] == [3, 3, 1]


def test_a_wrong_upward_section_names_the_file_line_and_field() -> None:
    text = ('site = "thcs-nhut-tao"\nschool_name = "Trường THCS Nhựt Tảo"\n\n[upward]\n'
            'enabled = true\nbatch_size = 5000\n')
    with pytest.raises(ConfigError) as caught:
        load_toml(text, "server.toml", ServerConfig)
    assert str(caught.value).startswith("server.toml:6: upward.batch_size:")
    assert ServerConfig(site=SITE, school_name="x").upward.enabled is False
