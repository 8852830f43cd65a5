"""The security gate: a headless station that alarms when a book leaves without a loan.

Every `poll_interval_s` the gate inventories its antennas' field. A tag not seen within
`absent_after_s` is someone walking through, and is decided at once, locally, never
waiting on the network:

1. its AFI is the on-loan value -> pass;
2. a foreign AFI (neither on-loan nor in-stock) -> ignored, unless `foreign_tags = "check"`;
3. else its data is read (ISO 28560): a patron card -> pass; an item in the gate's
   on-loan set -> pass (a kiosk's AFI write may have failed after the loan went
   through); else ALARM: the alarm outputs pulse, a chime, a `gate.alarm` event
   (the server turns it into a staff alert with the title);
4. data that cannot be read or decoded -> alarm "unreadable" only with the in-stock AFI.

The on-loan set comes from `gate.sync` (every item on loan and the ledger's last seq) at
start and at each reconnection, then from the site's ledger topic: a checkout adds its
item and the copy's other codes (barcode, RFID item id), a return removes them; entries
the sync already counted (seq <= its seq) are skipped. Item ids are compared folded
(upper case, letters and digits only): a tag may carry "TN00315" where the ledger says
"TN.00315". A full sync every `resync_s` repairs whatever a lost message left behind.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel

from drivers.rfid.reader import RfidError, RfidReader, TagRead
from drivers.rfid.tagdata import (
    DSFID_28560_2,
    DSFID_28560_3,
    TagData,
    TagDataError,
    decode_tag,
)
from kiosk.backend import BackendUnavailable
from kiosk.config import GateConfig, RfidConfig, StationConfig
from protocol import (
    GateAlarmData,
    GateSyncArgs,
    GateSyncResult,
    GateVisitorsData,
    LedgerEntry,
    Op,
    Reply,
)

log = logging.getLogger("thuvien.kiosk.gate")


# --- what the gate needs from the rest of the station ----------------------------------------

class StationLink(Protocol):
    """The part of `MqttLink` a headless station uses."""

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply: ...

    def publish_event(self, type_: str, data: BaseModel) -> bool: ...


class Pins(Protocol):
    """The part of `drivers.gpio.GpioBoard` a station uses."""

    @property
    def output_names(self) -> tuple[str, ...]: ...

    @property
    def input_names(self) -> tuple[str, ...]: ...

    def pulse(self, key: str, seconds: float) -> bool: ...

    def is_active(self, key: str) -> bool: ...

    def when_activated(self, key: str, callback: Callable[[], None] | None) -> None: ...

    def when_deactivated(self, key: str, callback: Callable[[], None] | None) -> None: ...


class Sound(Protocol):
    """The part of `kiosk.voice.Voice` a headless station uses."""

    def say(self, text: str, language: str) -> None: ...

    def chime(self, kind: Literal["ok", "error", "attention"]) -> None: ...


WallClock = Callable[[], dt.datetime]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).astimezone()


# Conflicts of replayed offline entries that left the loans unchanged (the server's
# NOT_APPLIED in server/circulation.py; a station does not import the server).
NOT_APPLIED_CONFLICTS = frozenset({"on_loan_to_other", "not_loanable", "not_on_loan", "lent_again"})


def item_key(item: str) -> str:
    """How the gate compares item ids: "tn.00315", "TN-00315" and "TN00315" are one."""
    return re.sub(r"[\W_]", "", item.upper())


# --- events that must survive an offline moment ----------------------------------------------

class PendingEvents:
    """Events the link could not send (offline), sent again at the next connection.

    An alarm or an unreturned book matters later too; a bounded queue, oldest dropped
    first, so a gate offline for a week cannot fill its memory.
    """

    def __init__(self, link: StationLink, limit: int = 500) -> None:
        self._link = link
        self._queue: deque[tuple[str, BaseModel]] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def publish(self, type_: str, data: BaseModel) -> bool:
        with self._lock:
            if not self._queue and self._link.publish_event(type_, data):
                return True
            self._queue.append((type_, data))  # behind older ones: keep the order
            return False

    def flush(self) -> int:
        sent = 0
        with self._lock:
            while self._queue:
                type_, data = self._queue[0]
                if not self._link.publish_event(type_, data):
                    break
                self._queue.popleft()
                sent += 1
        return sent

    def __len__(self) -> int:
        return len(self._queue)


# --- decisions ----------------------------------------------------------------------------------

Outcome = Literal["pass", "alarm", "ignored"]
Reason = Literal["afi_on_loan", "patron", "on_loan", "foreign", "afi", "not_on_loan",
                 "unreadable", "undecodable"]


@dataclass(frozen=True)
class Decision:
    """What the gate did about one tag, and how long it took from the inventory's answer
    to the outputs being switched (the figure the 50 ms target is about)."""

    uid: str
    outcome: Outcome
    reason: Reason
    item: str | None = None
    afi: int | None = None
    seconds: float = 0.0


def read_tag_data(reader: RfidReader, tag: TagRead, rfid: RfidConfig) -> TagData:
    """The tag's library data; `RfidError` or `TagDataError` when there is none to have."""
    data = reader.read_blocks(tag.uid, 0, rfid.blocks)
    dsfid: int | None = tag.dsfid
    if rfid.data_model == "28560-3":
        dsfid = DSFID_28560_3
    elif rfid.data_model == "28560-2":
        dsfid = DSFID_28560_2
    # Lenient: tags written by older systems (swapped nibbles, a bad CRC) are still books.
    return decode_tag(data, dsfid, lenient=True)


class Gate:
    """The gate's logic, with every part injected: tests drive `poll_once` and the
    callbacks; `run` loops until stopped."""

    def __init__(self, reader: RfidReader, link: StationLink, *, rfid: RfidConfig,
                 config: GateConfig, pins: Pins | None = None, sound: Sound | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: WallClock = _now,
                 on_decision: Callable[[Decision], None] | None = None) -> None:
        self.reader = reader
        self.link = link
        self.rfid = rfid
        self.config = config
        self.pins = pins
        self.sound = sound
        self.on_decision = on_decision
        # Recent decisions, newest last: what a benchmark or a test reads.
        self.decisions: deque[Decision] = deque(maxlen=10_000)
        self.events = PendingEvents(link)
        self._clock = clock
        self._wall = wall
        self._last_seen: dict[str, float] = {}
        # The on-loan set: folded item id -> the id as the server wrote it.
        self._on_loan: dict[str, str] = {}
        self._seq = -1          # the last ledger seq the set includes
        self._synced = False
        self._syncing = 0
        self._buffered: list[LedgerEntry] = []
        self._set_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._visitors = 0
        self._visitors_since = wall()
        self._visitors_lock = threading.Lock()
        self._next_report = clock() + config.visitors_report_s
        self._next_sync = clock() + config.resync_s
        self._reader_error = ""
        self._alarm_outputs = [name for name in config.alarm_outputs
                               if pins is not None and name in pins.output_names]
        if pins is not None:
            missing = [name for name in config.alarm_outputs if name not in pins.output_names]
            if missing:
                log.warning("gate: no output %s in [devices.gpio]; alarms without it",
                            ", ".join(missing))
            counter = config.counter_input
            if counter and counter in pins.input_names:
                pins.when_activated(counter, self._count_visitor)
            elif counter:
                log.info("gate: no input %r in [devices.gpio]; visitors are not counted", counter)

    # --- the on-loan set ---

    @property
    def synced(self) -> bool:
        return self._synced

    @property
    def ledger_seq(self) -> int:
        return self._seq

    def on_loan(self, item: str) -> bool:
        return item_key(item) in self._on_loan

    def on_loan_items(self) -> list[str]:
        with self._set_lock:
            return sorted(self._on_loan.values())

    def sync(self) -> bool:
        """Ask the server for every item on loan; False when it could not answer (the
        set then stays as it was and the next connection tries again)."""
        with self._sync_lock:
            with self._set_lock:
                self._syncing += 1
            try:
                try:
                    reply = self.link.request(Op.GATE_SYNC, GateSyncArgs())
                    if not reply.ok:
                        assert reply.error is not None
                        log.error("gate: gate.sync refused: %s %s", reply.error.code, reply.error.message)
                        return False
                    result: GateSyncResult = reply.result_as(GateSyncResult)
                except BackendUnavailable as exc:
                    log.warning("gate: no on-loan set from the server: %s", exc)
                    return False
                except ValueError as exc:  # a result that is not a GateSyncResult
                    log.error("gate: unreadable gate.sync result: %s", exc)
                    return False
                with self._set_lock:
                    self._on_loan = {item_key(item): item for item in result.items}
                    self._seq = result.seq
                    # Entries that arrived while the request was out, past what it counted.
                    for entry in sorted(self._buffered, key=lambda e: e.seq):
                        self._apply(entry)
                    self._synced = True
                log.info("gate: %d items on loan (ledger seq %d)", len(result.items), result.seq)
                return True
            finally:
                with self._set_lock:
                    self._syncing -= 1
                    if not self._syncing:
                        self._buffered.clear()

    def on_ledger(self, entry: LedgerEntry) -> None:
        """One ledger entry from the site's ledger topic (on paho's thread)."""
        with self._set_lock:
            if self._syncing:
                self._buffered.append(entry)
            self._apply(entry)

    def _apply(self, entry: LedgerEntry) -> None:
        # With the set lock held.
        if entry.seq <= self._seq:
            return  # already in the set
        self._seq = entry.seq
        if entry.conflict in NOT_APPLIED_CONFLICTS:
            return  # an offline replay the server recorded but did not apply to the loans
        # The accession number and the copy's other codes (barcode, RFID item id): a tag
        # may carry any of them.
        for code in (entry.item, *entry.codes):
            key = item_key(code)
            if entry.op == "checkout":
                self._on_loan[key] = code
            elif entry.op == "return":
                self._on_loan.pop(key, None)

    def on_connect(self) -> None:
        """After each (re)connection, on paho's thread: resync on a thread of our own,
        since the reply arrives on paho's thread."""
        threading.Thread(target=self._after_connect, name="gate-sync", daemon=True).start()

    def _after_connect(self) -> None:
        self.events.flush()
        self.sync()
        self.events.flush()

    # --- visitors ---

    def _count_visitor(self) -> None:
        with self._visitors_lock:
            self._visitors += 1

    @property
    def visitors(self) -> int:
        return self._visitors

    def report_visitors(self) -> bool:
        """Send the count since the last report, if anyone passed; True if it went out."""
        with self._visitors_lock:
            count, since = self._visitors, self._visitors_since
            if count == 0:
                return False
            if not self.link.publish_event("gate.visitors", GateVisitorsData(count=count, since=since)):
                return False  # offline: keep counting, report the total later
            self._visitors = 0
            self._visitors_since = self._wall()
            return True

    # --- tags ---

    def poll_once(self) -> list[Decision]:
        """One inventory of the field and a decision for each tag that just arrived."""
        try:
            tags = self.reader.inventory()
        except RfidError as exc:
            if str(exc) != self._reader_error:
                log.error("gate: inventory failed: %s", exc)
            self._reader_error = str(exc)
            return []
        seen_at = self._clock()
        self._reader_error = ""
        decisions = []
        for tag in tags:
            last = self._last_seen.get(tag.uid)
            self._last_seen[tag.uid] = seen_at
            if last is not None and seen_at - last <= self.rfid.absent_after_s:
                continue  # still the same passage
            decisions.append(self._decide(tag, seen_at))
        for uid, last in list(self._last_seen.items()):
            if seen_at - last > self.rfid.absent_after_s:
                del self._last_seen[uid]
        return decisions

    def _decide(self, tag: TagRead, seen_at: float) -> Decision:
        afi = tag.afi
        if afi is None:  # readers that do not report the AFI with the inventory
            try:
                afi = self.reader.read_afi(tag.uid)
            except RfidError as exc:
                log.info("gate: AFI of %s not read: %s", tag.uid, exc)
        in_stock = afi == self.rfid.afi_in_stock
        if afi == self.rfid.afi_on_loan:
            return self._record(tag.uid, "pass", "afi_on_loan", None, afi, seen_at)
        if afi is not None and not in_stock and self.config.foreign_tags == "ignore":
            return self._record(tag.uid, "ignored", "foreign", None, afi, seen_at)
        try:
            data = read_tag_data(self.reader, tag, self.rfid)
        except (RfidError, TagDataError) as exc:
            if in_stock and self.config.alarm_unreadable:
                log.warning("gate: tag %s (in stock) unreadable: %s", tag.uid, exc)
                return self._alarm(tag.uid, "unreadable", None, afi, seen_at)
            log.info("gate: tag %s ignored, no library data: %s", tag.uid, exc)
            return self._record(tag.uid, "ignored", "undecodable", None, afi, seen_at)
        if data.is_patron_card:
            return self._record(tag.uid, "pass", "patron", None, afi, seen_at)
        item = data.primary_item_id
        if self.on_loan(item):
            return self._record(tag.uid, "pass", "on_loan", item, afi, seen_at)
        return self._alarm(tag.uid, "afi" if in_stock else "not_on_loan", item, afi, seen_at)

    def _alarm(self, uid: str, reason: Literal["afi", "not_on_loan", "unreadable"],
               item: str | None, afi: int | None, seen_at: float) -> Decision:
        for name in self._alarm_outputs:
            assert self.pins is not None
            self.pins.pulse(name, self.config.alarm_s)
        decision = self._record(uid, "alarm", reason, item, afi, seen_at)
        log.warning("gate: ALARM %s item=%s uid=%s afi=%s", reason, item, uid,
                    "?" if afi is None else f"0x{afi:02X}")
        if self.sound is not None:
            self.sound.chime("attention")
        self.events.publish("gate.alarm", GateAlarmData(reason=reason, item=item, uid=uid, afi=afi))
        return decision

    def _record(self, uid: str, outcome: Outcome, reason: Reason, item: str | None,
                afi: int | None, seen_at: float) -> Decision:
        decision = Decision(uid=uid, outcome=outcome, reason=reason, item=item, afi=afi,
                            seconds=self._clock() - seen_at)
        self.decisions.append(decision)
        if outcome != "alarm":
            log.debug("gate: %s %s (%s) item=%s", outcome, uid, reason, item)
        if self.on_decision is not None:
            self.on_decision(decision)
        return decision

    # --- the loop ---

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = self._clock()
            try:
                self.poll_once()
                if started >= self._next_report:
                    self._next_report = started + self.config.visitors_report_s
                    self.report_visitors()
                if started >= self._next_sync:
                    self._next_sync = started + self.config.resync_s
                    threading.Thread(target=self.sync, name="gate-sync", daemon=True).start()
            except Exception:  # a bug in one round must not open the gate for good
                log.exception("gate: a polling round failed")
            stop.wait(max(0.0, self.rfid.poll_interval_s - (self._clock() - started)))


def run_gate(config: StationConfig, stop: threading.Event) -> int:
    """Run a gate station from its config until `stop` is set; 2 on a config it cannot run."""
    from drivers.gpio import create_gpio
    from drivers.rfid.reader import create_reader
    from kiosk.devices import DeviceWatch
    from kiosk.link import MqttLink
    from kiosk.voice import Voice

    if config.devices.rfid is None:
        log.error("a gate needs an RFID reader: add a [devices.rfid] table")
        return 2
    reader = create_reader(config.devices.rfid)
    reader.open()
    pins = create_gpio(config.devices.gpio) if config.devices.gpio is not None else None
    voice = Voice(config.voice)
    link = MqttLink(config.site, config.station, "gate", config.mqtt,
                    request_timeout=config.session.request_timeout_s)
    gate = Gate(reader, link, rfid=config.rfid, config=config.gate, pins=pins, sound=voice)
    # Both before start(): the ledger subscription is made at connection time.
    link.on_ledger = gate.on_ledger
    link.on_connect = gate.on_connect
    link.start(wait=0)  # the gate decides offline too: never wait for the broker
    try:
        with DeviceWatch([reader] if pins is None else [reader, pins], link):
            gate.run(stop)
    finally:
        link.stop()
        reader.close()
        if pins is not None:
            pins.close()
        voice.close()
    return 0
