"""Station events in: parsed, deduped, kept, and turned into alerts for the staff.

`StationEvents.handle` takes the raw payload of one `.../station/<id>/event` message and
never raises for anything a station sends: junk is dropped with one log line. A valid
event is stored once per (station, event id) in `station_events`; a repeated id changes
nothing. What a person must look at becomes an `alerts` row and a protocol `Alert` for
the site's alert topic:

- `gate.alarm`: always, the item looked up for its title (an unknown item still alarms);
- `returnbox.full` with `full: true`; `returnbox.unreturned`; `device.fault`;
- resolving events raise nothing and acknowledge the open alert they resolve, with
  `acknowledged_by` set to their type: `device.ok` closes the open `device.fault` of that
  device, `returnbox.full` with `full: false` closes the open `returnbox.full`. While such
  an alert is open, the same problem reported again raises no second alert.

`gate.visitors` becomes a `visits` row. Unknown types are stored and logged, no alert.

`StationEvents.clock_skew` raises the `station.clock_skew` alert the service asks for
when a station's clock is far from the server's: one per station while it is open.

`EventWorker` runs `handle` on a thread of its own so that a slow event (a database
write waiting for a lock) never delays the requests handled on paho's thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Engine, Table, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

import protocol
from protocol import EVENT_DATA_BY_TYPE, MAX_PAYLOAD_BYTES, ProtocolError
from protocol.codec import describe, parse_model
from server.config import ServerConfig
from server.models import Alert as AlertRow
from server.models import Copy, Loan, StationEvent, Title, Visit

log = logging.getLogger("thuvien.server.events")

_TEXTS: dict[str, dict[str, str]] = {
    "vi": {
        "alarm": "Cổng {station}: «{title}» ({item}) chưa được mượn đi qua cổng.",
        "alarm_on_loan": "Cổng {station}: «{title}» ({item}) làm cổng báo động nhưng đang "
                         "được mượn: hãy kiểm tra tem RFID của sách.",
        "alarm_unknown": "Cổng {station}: một tem mã {item} không có trong thư viện "
                         "đi qua cổng.",
        "alarm_unreadable": "Cổng {station}: một sách có tem RFID không đọc được đi qua "
                            "cổng{uid}.",
        "full": "Hộp trả sách {station} đã đầy: cần lấy sách ra.",
        "unreturned": "Hộp trả sách {station}: «{title}» ({item}) chưa được trả "
                      "({reason}). Sách đang nằm trong hộp.",
        "unreturned_unknown": "Hộp trả sách {station}: sách mã {item} chưa được trả "
                              "({reason}). Sách đang nằm trong hộp.",
        "fault": "Trạm {station}: thiết bị {device} bị lỗi{detail}.",
        "clock_skew": "Trạm {station}: đồng hồ {direction} {amount} so với máy chủ. "
                      "Vui lòng chỉnh lại giờ của trạm.",
        "ahead": "nhanh", "behind": "chậm",
    },
    "en": {
        "alarm": "Gate {station}: «{title}» ({item}) went through the gate without "
                 "being checked out.",
        "alarm_on_loan": "Gate {station}: «{title}» ({item}) set off the gate but is on "
                         "loan: please check the book's RFID tag.",
        "alarm_unknown": "Gate {station}: a tag {item} that is not in the library went "
                         "through the gate.",
        "alarm_unreadable": "Gate {station}: a book with an unreadable RFID tag went "
                            "through the gate{uid}.",
        "full": "Return box {station} is full: please empty it.",
        "unreturned": "Return box {station}: «{title}» ({item}) was not returned "
                      "({reason}). The book is in the box.",
        "unreturned_unknown": "Return box {station}: the book {item} was not returned "
                              "({reason}). The book is in the box.",
        "fault": "Station {station}: device {device} is at fault{detail}.",
        "clock_skew": "Station {station}: its clock is {amount} {direction} the server's. "
                      "Please set the station's time.",
        "ahead": "ahead of", "behind": "behind",
    },
}

CLOCK_SKEW = "station.clock_skew"

# How many events may wait for the worker; beyond, a flooding station's events are dropped.
QUEUE_SIZE = 1000

_TYPE_LENGTH: int = StationEvent.__table__.c.type.type.length  # type: ignore[attr-defined]

Outcome = Literal["new", "duplicate", "dropped", "failed"]


@dataclass
class Handled:
    """What handling one event did: `alerts` are committed, ready to publish."""

    outcome: Outcome
    alerts: list[protocol.Alert] = field(default_factory=list)
    detail: str = ""


@dataclass(frozen=True)
class _CopyFound:
    accession_number: str
    title: str
    on_loan: bool


def _table(model: type[Any]) -> Table:
    return model.__table__  # type: ignore[no-any-return]


_copies, _titles, _loans = _table(Copy), _table(Title), _table(Loan)
_events, _alerts, _visits = _table(StationEvent), _table(AlertRow), _table(Visit)
_COPY = (select(_copies.c.accession_number, _titles.c.title, _loans.c.id.label("loan_id"))
         .join(_titles, _titles.c.id == _copies.c.title_id)
         .outerjoin(_loans, _loans.c.copy_id == _copies.c.id))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def parse_event(payload: bytes) -> tuple[protocol.Event, BaseModel | None]:
    """The event and its data model (None for a type this server does not know)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    event = parse_model(protocol.Event, payload)
    if len(event.type) > _TYPE_LENGTH:
        # The protocol puts no bound on it; the column (and PostgreSQL) does.
        raise ProtocolError(f"type: longer than {_TYPE_LENGTH} characters", event.id)
    model = EVENT_DATA_BY_TYPE.get(event.type)
    if model is None:
        return event, None
    try:
        return event, model.model_validate(event.data)
    except ValidationError as exc:
        raise ProtocolError(describe(exc, prefix="data."), event.id) from None


class StationEvents:
    def __init__(self, engine: Engine, config: ServerConfig,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._engine = engine
        self._clock = clock
        self._texts = _TEXTS[config.language]
        self._zone = ZoneInfo(config.calendar.timezone)

    def handle(self, station: str, payload: bytes) -> Handled:
        try:
            event, data = parse_event(payload)
        except ProtocolError as exc:
            log.warning("dropped an event from %s: %s", station, exc.detail)
            return Handled("dropped", detail=exc.detail)
        try:
            try:
                return self._apply(station, event, data)
            except OperationalError as exc:
                # A lock held too long or a lost connection: once more, then give up.
                log.warning("event %s from %s: %s; retrying", event.id, station, exc.orig)
                return self._apply(station, event, data)
        except IntegrityError:
            # The unique (station, event_id) caught a copy that the look-up missed.
            return Handled("duplicate")
        except OperationalError as exc:
            log.error("event %s from %s not stored: %s", event.id, station, exc.orig)
            return Handled("failed", detail=str(exc.orig))

    def clock_skew(self, station: str, skew_seconds: float, at: dt.datetime) -> Handled:
        """Alert that `station`'s clock is `skew_seconds` off (positive: ahead), unless an
        alert of this kind for it is still open."""
        now = self._clock()
        seconds = round(skew_seconds)
        try:
            with self._engine.begin() as db:
                if self._open(db, station, CLOCK_SKEW, None):
                    return Handled("duplicate")
                alert = protocol.Alert(
                    id=str(uuid.uuid4()), type=CLOCK_SKEW, at=now.astimezone(self._zone),
                    message=self._texts["clock_skew"].format(
                        station=station, amount=_duration(abs(seconds)),
                        direction=self._texts["ahead" if seconds > 0 else "behind"]),
                    data={"station": station, "skew_seconds": seconds,
                          "station_at": at.astimezone(self._zone).isoformat(),
                          "server_at": now.astimezone(self._zone).isoformat()})
                db.execute(insert(_alerts).values(
                    alert_id=alert.id, type=alert.type, station=station, at=now,
                    message=alert.message, data=alert.data))
        except OperationalError as exc:
            log.error("clock skew alert for %s not stored: %s", station, exc.orig)
            return Handled("failed", detail=str(exc.orig))
        return Handled("new", [alert])

    # --- one event, one transaction -------------------------------------------------

    def _apply(self, station: str, event: protocol.Event, data: BaseModel | None) -> Handled:
        now = self._clock()
        with self._engine.begin() as db:
            seen = db.execute(select(_events.c.id).where(
                _events.c.station == station, _events.c.event_id == event.id)).first()
            if seen is not None:
                log.info("event %s from %s already handled", event.id, station)
                return Handled("duplicate")
            row_id = db.execute(insert(_events).values(
                station=station, event_id=event.id, type=event.type, at=event.at,
                received_at=now, data=event.data)).inserted_primary_key[0]
            alerts = self._react(db, station, event, data, row_id, now)
            for alert in alerts:
                db.execute(insert(_alerts).values(
                    alert_id=alert.id, type=alert.type, station=station, at=alert.at,
                    message=alert.message, data=alert.data, event_id=row_id))
        return Handled("new", alerts)

    def _react(self, db: Connection, station: str, event: protocol.Event,
               data: BaseModel | None, row_id: int, now: dt.datetime) -> list[protocol.Alert]:
        if isinstance(data, protocol.GateAlarmData):
            return [self._gate_alarm(db, station, event, data)]
        if isinstance(data, protocol.GateVisitorsData):
            db.execute(insert(_visits).values(station=station, since=data.since,
                                              until=event.at, count=data.count,
                                              event_id=row_id))
            return []
        if isinstance(data, protocol.ReturnboxFullData):
            if not data.full:
                self._resolve(db, station, "returnbox.full", None, now, by=event.type)
                return []
            if self._open(db, station, "returnbox.full", None):
                return []
            return [self._alert(event, "full", {"station": station}, station=station)]
        if isinstance(data, protocol.ReturnboxUnreturnedData):
            found = self._copy(db, data.item)
            reason = data.message.strip().rstrip(".") or data.code
            values = {"station": station, "item": data.item, "code": data.code,
                      "reason": reason, "title": found.title if found else None,
                      "accession_number": found.accession_number if found else None}
            if found is None:
                return [self._alert(event, "unreturned_unknown", values, **values)]
            return [self._alert(event, "unreturned", values, **{
                **values, "item": found.accession_number})]
        if isinstance(data, protocol.DeviceEventData):
            if event.type == "device.ok":
                self._resolve(db, station, "device.fault", data.device, now, by=event.type)
                return []
            if self._open(db, station, "device.fault", data.device):
                return []
            values = {"station": station, "device": data.device, "state": data.state,
                      "detail": data.detail}
            detail = f": {data.detail}" if data.detail else ""
            return [self._alert(event, "fault", values, station=station,
                                device=data.device, detail=detail)]
        log.info("stored event %s of type %s from %s (no alert for this type)",
                 event.id, event.type, station)
        return []

    def _gate_alarm(self, db: Connection, station: str, event: protocol.Event,
                    data: protocol.GateAlarmData) -> protocol.Alert:
        found = self._copy(db, data.item) if data.item else None
        values: dict[str, Any] = {
            "station": station, "item": data.item, "title": found.title if found else None,
            "reason": data.reason, "uid": data.uid, "afi": data.afi,
            "accession_number": found.accession_number if found else None,
            "on_loan": found.on_loan if found else None}
        if found is not None:
            key = "alarm_on_loan" if found.on_loan else "alarm"
            return self._alert(event, key, values, station=station, title=found.title,
                               item=found.accession_number)
        if data.item:
            return self._alert(event, "alarm_unknown", values, station=station, item=data.item)
        uid = f" (UID {data.uid})" if data.uid else ""
        return self._alert(event, "alarm_unreadable", values, station=station, uid=uid)

    def _alert(self, event: protocol.Event, key: str, data: dict[str, Any],
               **words: Any) -> protocol.Alert:
        return protocol.Alert(id=str(uuid.uuid4()), type=event.type,
                              at=event.at.astimezone(self._zone),
                              message=self._texts[key].format(**words), data=data)

    # --- open alerts ------------------------------------------------------------------

    def _open_ids(self, db: Connection, station: str, type_: str,
                  device: str | None) -> list[int]:
        rows = db.execute(select(_alerts.c.id, _alerts.c.data).where(
            _alerts.c.acknowledged_at.is_(None), _alerts.c.station == station,
            _alerts.c.type == type_)).all()
        # A handful of open alerts per station: the JSON is read here rather than with
        # JSON operators that SQLite and PostgreSQL spell differently.
        return [row.id for row in rows if device is None or row.data.get("device") == device]

    def _open(self, db: Connection, station: str, type_: str, device: str | None) -> bool:
        if self._open_ids(db, station, type_, device):
            log.info("%s from %s%s: an alert is already open", type_, station,
                     f" ({device})" if device else "")
            return True
        return False

    def _resolve(self, db: Connection, station: str, type_: str, device: str | None,
                 now: dt.datetime, by: str) -> None:
        """Acknowledge the open alerts of `type_` in the name of the event `by`."""
        ids = self._open_ids(db, station, type_, device)
        if ids:
            db.execute(update(_alerts).where(_alerts.c.id.in_(ids)).values(
                acknowledged_by=by, acknowledged_at=now))
            log.info("%s from %s resolved %d open %s alert(s)", by, station, len(ids), type_)

    # --- the catalogue ----------------------------------------------------------------

    def _copy(self, db: Connection, item: str) -> _CopyFound | None:
        key = item.strip()
        upper = key.upper()
        columns = (_copies.c.barcode, _copies.c.accession_number, _copies.c.rfid_item_id)
        # The indexed exact match first; any case only when it missed (a scan).
        exact = or_(*(column.in_([key, upper]) for column in columns))
        any_case = or_(*(func.upper(column) == upper for column in columns))
        row = db.execute(_COPY.where(exact)).first() or db.execute(_COPY.where(any_case)).first()
        if row is None:
            return None
        return _CopyFound(row.accession_number, row.title, row.loan_id is not None)


def _duration(seconds: int) -> str:
    """A skew for the message: "1 h 05 min", "2 min 05 s", "40 s"."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


Job = Callable[[StationEvents], Handled]


class EventWorker:
    """Handles events on its own thread; alerts go to `publish` once committed."""

    def __init__(self, events: StationEvents,
                 publish: Callable[[protocol.Alert], None]) -> None:
        self.events = events
        self._publish = publish
        self._queue: queue.Queue[tuple[str, bytes | Job] | None] = queue.Queue(
            maxsize=QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="thuvien-events", daemon=True)
        self.handled = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, station: str, payload: bytes) -> bool:
        """Queue one event; False (and a log line) when the queue is full."""
        try:
            self._queue.put_nowait((station, payload))
        except queue.Full:
            log.warning("dropped an event from %s: %d events are waiting already",
                        station, QUEUE_SIZE)
            return False
        return True

    def submit_job(self, station: str, job: Job) -> bool:
        """Queue work of the server's own for `station` (an alert to store and publish)."""
        try:
            self._queue.put_nowait((station, job))
        except queue.Full:
            log.warning("dropped a job for %s: %d events are waiting already",
                        station, QUEUE_SIZE)
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Handle what is queued, then end the thread."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("events still queued at shutdown were not handled")
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            station, payload = item
            try:
                handled = (payload(self.events) if callable(payload)
                           else self.events.handle(station, payload))
                for alert in handled.alerts:
                    self._publish(alert)
            except Exception:  # the worker must survive anything, like paho's thread
                log.exception("unexpected error handling an event from %s", station)
            finally:
                self.handled += 1


__all__ = ["CLOCK_SKEW", "EventWorker", "Handled", "QUEUE_SIZE", "StationEvents",
           "parse_event"]
