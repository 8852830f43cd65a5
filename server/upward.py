"""The school server reports upward (issue #8): its ledger, reduced to nothing personal,
and retained report snapshots, published on its own broker under
`thuvien/v1/<site>/upward/...` (protocol/upward.py). The broker's bridge
(`thuvien bridge config`, server/bridge.py) carries them to the commune office and the
province; this module never talks to an upper broker itself.

Nothing is lost: the cursor is the last ledger seq whose batch the local broker
acknowledged (paho's on_publish for QoS 1), kept in the `server_state` table. On start,
every `interval_s`, and after every reconnect, everything after the cursor is published
again; a broker that is down only delays it. Duplicates are normal and harmless: a
consumer counts an entry once by (site, seq).

Nothing personal goes up: a reader is their kind, class and grade. The statistics
snapshot names the busiest readers and the teachers who borrowed equipment; those lists
are reduced here to class and count before they leave the school.

The publisher has a paho client of its own (its own client id, the server's login):
its acknowledgements are its own to count, and a slow report never holds up the
stations' replies on the service's client.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from protocol import encode
from protocol.models import MAX_PAYLOAD_BYTES
from protocol.upward import (
    REPORT_NAMES,
    UpwardEntry,
    UpwardLedgerBatch,
    UpwardReport,
    UpwardSchool,
    upward_ledger,
    upward_report,
    upward_school,
)
from server import __version__, db
from server.config import ServerConfig
from server.models import Copy, LedgerEntry, Reader, ServerState

__all__ = ["CURSOR_KEY", "UpwardPublisher", "impersonal", "ledger_after", "pack_batches",
           "read_cursor", "report_messages", "school_message", "store_cursor"]

log = logging.getLogger("thuvien.upward")

CURSOR_KEY = "upward.ledger_seq"
# Batches handed to paho and not yet acknowledged: bounds memory after a long outage and
# what a reconnect sends twice.
WINDOW = 10
# A payload limit below the protocol's 64 KiB (and the broker's max_packet_size of
# config/mosquitto/thuvien.conf): MAX_BATCH entries of ~300 bytes would not fit.
BATCH_BYTES = 60 * 1024
# A seq missing in the middle of the ledger is waited for this long (a PostgreSQL
# transaction that took its seq earlier but commits later), then passed over (a rollback).
GAP_GRACE_S = 30.0
# The cursor is written at most this often while catching up (and always at stop):
# a crash in between only resends a little.
PERSIST_EVERY_S = 1.0
# A report that failed to build is tried again this soon, not a whole period later.
REPORT_RETRY_S = 300.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- the cursor ---------------------------------------------------------------------------


def read_cursor(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        row = session.get(ServerState, CURSOR_KEY)
    if row is None:
        return 0
    try:
        return int(row.value)
    except ValueError:
        # Never guess forward: from 0 everything is resent, and counted once above.
        log.error("server_state %s holds %r, not a seq; publishing the ledger from the start",
                  CURSOR_KEY, row.value)
        return 0


def store_cursor(sessions: sessionmaker[Session], seq: int, now: dt.datetime) -> None:
    with sessions.begin() as session:
        session.merge(ServerState(key=CURSOR_KEY, value=str(seq), updated_at=now))


# --- what goes up ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerRow:
    seq: int
    entry: UpwardEntry | None  # None: the row could not be reduced (logged, passed over)


def ledger_after(session: Session, after: int, limit: int) -> list[LedgerRow]:
    """The ledger entries after seq `after`, oldest first, reduced to what goes upward:
    the copy's ĐKCB and kind, the reader's kind, class and grade; no name, code, card."""
    rows = session.execute(
        select(LedgerEntry.seq, LedgerEntry.op, Copy.accession_number, Copy.kind, Reader.kind,
               Reader.class_name, Reader.grade, LedgerEntry.station, LedgerEntry.station_at,
               LedgerEntry.server_at, LedgerEntry.due_on, LedgerEntry.days_late,
               LedgerEntry.offline, LedgerEntry.conflict)
        .join(Copy, Copy.id == LedgerEntry.copy_id)
        .join(Reader, Reader.id == LedgerEntry.reader_id)
        .where(LedgerEntry.seq > after)
        .order_by(LedgerEntry.seq)
        .limit(limit)).all()
    out = []
    for (seq, op, item, item_kind, reader_kind, class_name, grade, station, station_at,
         server_at, due, days_late, offline, conflict) in rows:
        try:
            entry: UpwardEntry | None = UpwardEntry(
                seq=seq, op=op, item=item, item_kind=item_kind, reader_kind=reader_kind,
                reader_class=class_name, reader_grade=grade, station=station,
                station_at=station_at, server_at=server_at, due=due, days_late=days_late,
                offline=bool(offline), conflict=conflict)
        except ValidationError as exc:
            log.error("ledger entry %d cannot go upward (%s); passed over",
                      seq, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                     for e in exc.errors(include_url=False)))
            entry = None
        out.append(LedgerRow(seq, entry))
    return out


def pack_batches(site: str, entries: Iterable[UpwardEntry], batch_size: int,
                 max_bytes: int = BATCH_BYTES) -> list[UpwardLedgerBatch]:
    """Entries in batches of at most `batch_size` entries and `max_bytes` of JSON."""
    envelope = len(encode(UpwardLedgerBatch(site=site, entries=[_PROBE]))) - len(encode(_PROBE))
    batches: list[UpwardLedgerBatch] = []
    current: list[UpwardEntry] = []
    size = envelope
    for entry in entries:
        length = len(encode(entry)) + 1  # the comma
        if current and (len(current) >= batch_size or size + length > max_bytes):
            batches.append(UpwardLedgerBatch(site=site, entries=current))
            current, size = [], envelope
        current.append(entry)
        size += length
    if current:
        batches.append(UpwardLedgerBatch(site=site, entries=current))
    return batches


_PROBE = UpwardEntry(seq=1, op="checkout", item="-", item_kind="-", reader_kind="student",
                     station="-", station_at=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
                     server_at=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))


def impersonal(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """A report snapshot without the people in it. The statistics list the busiest readers
    and the teachers who borrowed equipment by code and name: they go up as class and
    count only (ranks kept). The Thông tư 16 snapshot names no one."""
    if name != "statistics":
        return data
    data = dict(data)
    if "top_readers" in data:
        data["top_readers"] = [{"class": row.get("class"), "loans": row.get("loans")}
                               for row in data["top_readers"]]
    if "equipment_by_teacher" in data:
        data["equipment_by_teacher"] = [{"loans": row.get("loans")}
                                        for row in data["equipment_by_teacher"]]
    return data


def _today(config: ServerConfig, now: dt.datetime) -> dt.date:
    return now.astimezone(ZoneInfo(config.calendar.timezone)).date()


def report_messages(sessions: sessionmaker[Session], config: ServerConfig,
                    now: dt.datetime) -> list[tuple[str, bytes]]:
    """(topic, payload) of each report snapshot for the current school year."""
    from server.reports.period import school_year
    from server.reports.registry import ReportParams, get_report

    today = _today(config, now)
    year = school_year(config, today=today).first
    readers = db.read_only(sessions)
    messages = []
    for name in REPORT_NAMES:
        spec = get_report(name)
        assert spec.snapshot is not None, f"report {name} has no JSON snapshot"
        data = spec.snapshot(readers, config, ReportParams(school_year=year), today=today)
        report = UpwardReport(site=config.site, name=name, school_year=year, generated_at=now,
                              data=impersonal(name, data))
        messages.append((upward_report(config.site, name, year), encode(report)))
    return messages


def school_message(config: ServerConfig, now: dt.datetime) -> tuple[str, bytes]:
    return upward_school(config.site), encode(UpwardSchool(
        site=config.site, school_name=config.school_name, levels=list(config.library.levels),
        software_version=__version__, at=now))


# --- the publisher ----------------------------------------------------------------------------


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    # Without TCP_NODELAY each QoS 1 acknowledgement waits ~40 ms for Nagle (STACK.md).
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


@dataclass
class _Batch:
    """A ledger batch handed to paho: the cursor may move to `last_seq` once it and every
    batch before it are acknowledged."""

    last_seq: int
    acked: bool = False


class UpwardPublisher:
    """Publishes the ledger after the cursor and the report snapshots, on its own thread."""

    def __init__(self, config: ServerConfig, engine: Engine, *,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.config = config
        self.site = config.site
        self.settings = config.upward
        self._sessions = db.session_factory(engine)
        # Reads take no write lock on SQLite: the stations' writes never wait for us.
        self._readers = db.read_only(self._sessions)
        self._clock = clock
        self.connected = threading.Event()
        # Figures for tests and logs.
        self.batches_published = 0
        self.entries_published = 0
        self.entries_passed_over = 0
        self.reports_published = 0
        self.report_failures = 0

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Paho's side (its network thread) only records, under the lock; the worker acts.
        self._acked: set[int] = set()
        self._connects = 0            # bumped on every connect: in-flight work is then void
        self._seen_connects = 0
        # The worker's own state.
        self.cursor = 0               # acknowledged by the broker (and stored, soon after)
        self._stored = 0
        self._stored_at = 0.0
        self._sent = 0                # handed to paho
        self._in_flight: OrderedDict[int, _Batch] = OrderedDict()  # by mid, in sending order
        self._retained: dict[str, bytes] = {}  # waiting to be published (reports, school)
        self._retained_in_flight: dict[int, tuple[str, bytes]] = {}
        self._reports_due = 0.0       # time.monotonic() when the snapshots are due
        self._gap: tuple[int, float] | None = None  # (missing seq, first seen)
        self._no_mid = 0              # keys below 0: rows passed over, acknowledged as sent

        mqtt_config = config.mqtt
        base_id = mqtt_config.client_id or f"thuvien-server-{self.site}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{base_id}-upward",
                                  clean_session=True)
        if mqtt_config.username:
            self.client.username_pw_set(mqtt_config.username, mqtt_config.password())
        mqtt_config.apply_tls(self.client)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_socket_open = _no_delay
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, wait: float = 0.0) -> None:
        self.cursor = self._stored = self._sent = read_cursor(self._readers)
        self._stored_at = time.monotonic()
        self._retained.update([school_message(self.config, self._clock())])
        self._reports_due = time.monotonic()
        log.info("upward: publishing the ledger of %s after seq %d%s", self.site, self.cursor,
                 f" (commune: {self.settings.commune})" if self.settings.commune else "")
        self._thread = threading.Thread(target=self._run, name="upward", daemon=True)
        self._thread.start()
        mqtt_config = self.config.mqtt
        self.client.connect_async(mqtt_config.host, mqtt_config.port,
                                  keepalive=mqtt_config.keepalive)
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            log.warning("upward: broker %s:%s not reachable yet; retrying in the background",
                        mqtt_config.host, mqtt_config.port)

    def stop(self, drain: float = 2.0) -> None:
        """Wait up to `drain` seconds for what is in flight to be acknowledged, store the
        cursor, disconnect."""
        deadline = time.monotonic() + drain
        while self.connected.is_set() and time.monotonic() < deadline \
                and (self._in_flight or self._retained_in_flight):
            time.sleep(0.02)
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()

    def wake(self) -> None:
        """Look at the ledger now rather than at the next interval (a new entry committed)."""
        self._wake.set()

    def refresh_reports(self) -> None:
        """Make and publish the report snapshots now (a librarian's corrected answers, a
        school year just closed) rather than at the next period."""
        self._reports_due = 0.0
        self._wake.set()

    # --- paho's callbacks (its network thread) ------------------------------------------------

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            log.error("upward: the broker refused the connection: %s", reason)
            return
        with self._lock:
            self._connects += 1
        self.connected.set()
        self._wake.set()
        log.info("upward: connected to the broker")

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("upward: lost the broker (%s); what it did not acknowledge is resent", reason)

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: Any,
                    _properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            # MQTT 5 only (we speak 3.1.1, where a refused publish is acknowledged silently).
            log.error("upward: the broker refused message %d: %s", mid, reason)
            return
        with self._lock:
            self._acked.add(mid)
        self._wake.set()

    # --- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            stopping = self._stopping.is_set()
            try:
                self._step(final=stopping)
            except Exception:  # the database away for a moment, a bug: try again later
                log.exception("upward: publishing failed; trying again in %.0f s",
                              self.settings.interval_s)
            if stopping:
                return
            self._wake.wait(self._next_wait())
            self._wake.clear()

    def _next_wait(self) -> float:
        wait = self.settings.interval_s
        if self.cursor != self._stored:  # come back in time to store the cursor
            wait = min(wait, max(0.0, self._stored_at + PERSIST_EVERY_S - time.monotonic()))
        return wait

    def _step(self, final: bool = False) -> None:
        with self._lock:
            acked, self._acked = self._acked, set()
            reconnected = self._connects != self._seen_connects
            self._seen_connects = self._connects
        self._take_acks(acked)
        if reconnected:
            self._start_over()
        self._store_cursor(force=final)
        if final or not self.connected.is_set():
            return
        now = time.monotonic()
        if now >= self._reports_due:
            self._build_reports(now)
        self._publish_retained()
        self._publish_ledger()

    def _take_acks(self, acked: set[int]) -> None:
        for mid in acked:
            # A mid known to neither is paho resending a message from before a reconnect.
            if self._retained_in_flight.pop(mid, None) is not None:
                self.reports_published += 1
            elif (batch := self._in_flight.get(mid)) is not None:
                batch.acked = True
        # The cursor moves over acknowledged batches in the order they were sent only:
        # a later batch acknowledged first waits for the earlier ones.
        while self._in_flight:
            batch = next(iter(self._in_flight.values()))
            if not batch.acked:
                break
            self._in_flight.popitem(last=False)
            self.cursor = batch.last_seq

    def _start_over(self) -> None:
        """After a reconnect: what was in flight is published again (paho may resend some
        of it too: duplicates are counted once above)."""
        for topic, payload in self._retained_in_flight.values():
            self._retained.setdefault(topic, payload)  # unless a newer snapshot waits
        self._retained_in_flight.clear()
        self._in_flight.clear()
        if self._sent != self.cursor:
            log.info("upward: resending the ledger after seq %d", self.cursor)
        self._sent = self.cursor

    def _store_cursor(self, force: bool) -> None:
        if self.cursor == self._stored:
            return
        if not force and time.monotonic() - self._stored_at < PERSIST_EVERY_S:
            return  # _next_wait brings the worker back in time
        store_cursor(self._sessions, self.cursor, self._clock())
        self._stored, self._stored_at = self.cursor, time.monotonic()

    def _build_reports(self, now: float) -> None:
        try:
            messages = report_messages(self._sessions, self.config, self._clock())
        except Exception:
            self.report_failures += 1
            retry = min(REPORT_RETRY_S, self.settings.reports_every_minutes * 60)
            log.exception("upward: the report snapshots failed; trying again in %.0f s", retry)
            self._reports_due = now + retry
            return
        self._retained.update(messages)
        self._reports_due = now + self.settings.reports_every_minutes * 60

    def _publish_retained(self) -> None:
        for topic in list(self._retained):
            payload = self._retained.pop(topic)
            info = self.client.publish(topic, payload, qos=1, retain=True)
            self._retained_in_flight[info.mid] = (topic, payload)

    def _publish_ledger(self) -> None:
        batch_size = self.settings.batch_size
        while len(self._in_flight) < WINDOW and self.connected.is_set():
            with self._readers() as session:
                rows = ledger_after(session, self._sent, batch_size * (WINDOW - len(self._in_flight)))
            rows = self._until_gap(rows)
            if not rows:
                return
            entries = [row.entry for row in rows if row.entry is not None]
            self.entries_passed_over += len(rows) - len(entries)
            last_seq = rows[-1].seq
            batches = pack_batches(self.site, entries, batch_size)
            if not batches:  # every row passed over: nothing to send, nothing to wait for
                self._no_mid -= 1
                self._in_flight[self._no_mid] = _Batch(last_seq, acked=True)
                self._sent = last_seq
                self._take_acks(set())
                continue
            for index, batch in enumerate(batches):
                info = self.client.publish(upward_ledger(self.site), encode(batch), qos=1)
                # The last batch carries the rows passed over after its last entry.
                upto = last_seq if index == len(batches) - 1 else batch.entries[-1].seq
                self._in_flight[info.mid] = _Batch(upto)
                self.batches_published += 1
                self.entries_published += len(batch.entries)
            self._sent = last_seq

    def _until_gap(self, rows: list[LedgerRow]) -> list[LedgerRow]:
        """The rows up to the first missing seq, unless it has been missing for
        GAP_GRACE_S (PostgreSQL hands out seqs before commit; a rollback loses one)."""
        expected = self._sent + 1
        for index, row in enumerate(rows):
            if row.seq != expected:
                if self._sent == 0 and index == 0:
                    expected = row.seq + 1  # the ledger's first entry need not be seq 1
                    continue
                now = time.monotonic()
                if self._gap is None or self._gap[0] != expected:
                    self._gap = (expected, now)
                if now - self._gap[1] < GAP_GRACE_S:
                    return rows[:index]
                log.warning("upward: ledger seq %d-%d never committed; passed over",
                            expected, row.seq - 1)
            expected = row.seq + 1
        return rows
