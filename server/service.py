"""The server's MQTT side: requests and station events in; replies, ledger entries,
alerts and status out.

Every inbound payload is parsed into a protocol model here (events in server/events.py)
and each rejection is logged in this one place. Requests are handled on paho's network
thread, one at a time: the circulation core is fast (a few SQLite statements), and one
writer is what SQLite wants. Events only pass through that thread into a queue: a
worker thread stores them and publishes alerts, sharing with the requests nothing but
the database's write lock, held a millisecond or so per event.

Only registered stations are served (`[stations] require_registration`): a request from
a station that is not registered, or whose kind may not do the operation (a gate
cannot lend), is answered `unauthorized` and changes nothing; an event from an unknown
station is dropped. The registry lives in memory (server/stations.py). An online
request whose `at` is far from the server's clock raises one `station.clock_skew`
alert per station, stored and published by the events worker.

`stocktake.scan` (an addition to v1) is answered here, by `StocktakeScans`, on the same
worker and through the same idempotency record as the circulation's operations.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from protocol import (
    MAX_PAYLOAD_BYTES,
    Alert,
    ErrorCode,
    Op,
    ProtocolError,
    Reply,
    Request,
    ShelfProgress,
    Status,
    StocktakeLine,
    StocktakeScanArgs,
    StocktakeScanResult,
    default_message,
    encode,
    parse_request,
    topics,
)
from protocol.models import OFFLINE_STATUS
from server import __version__
from server import db
from server import stocktake
from server.circulation import Circulation, Outcome, utc_now
from server.config import ServerConfig
from server.events import EventWorker, StationEvents
from server.models import Copy, CopyStatus, ProcessedRequest, StocktakeScan
from server.stations import StationRegistry

log = logging.getLogger("thuvien.server")

# Messages waiting for the request worker; beyond this a burst is dropped (stations retry).
INBOX_LIMIT = 20_000

_TEXTS: dict[str, dict[str, str]] = {
    "vi": {
        "unregistered": "Trạm {station} chưa được đăng ký với máy chủ thư viện. "
                        "Vui lòng báo cán bộ thư viện.",
        "not_allowed": "Trạm {station} ({kind}) không được phép thực hiện thao tác {op}.",
    },
    "en": {
        "unregistered": "Station {station} is not registered with the library server. "
                        "Please tell the librarian.",
        "not_allowed": "Station {station} ({kind}) may not do {op}.",
    },
}

# Room for the reply's envelope around a result (its id is at most 128 characters).
_ENVELOPE_ROOM = 1024


class StocktakeScans:
    """`stocktake.scan`: the codes of a batch counted in the open stocktake
    (server/stocktake.py), each answered with what it was, and the shelf's progress.

    Answered once per request id, through the circulation's idempotency record
    (`processed_requests`). The count commits first, the reply right after: a copy counts
    once whatever happens, so a retry after a crash between the two hears "already
    counted" where the first answer would have said "counted", and nothing is counted twice.
    """

    def __init__(self, sessions: sessionmaker[Session], config: ServerConfig,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._sessions = sessions
        self._language = config.language
        self._clock = clock

    def handle_request(self, request: Request, station: str) -> Outcome:
        try:
            return self._handle(request, station)
        except Exception:
            # Not stored, like the circulation's `internal`: the station's retry may succeed.
            log.exception("request %s (%s) from station %s failed", request.id,
                          request.op.value, station)
            return Outcome(self._failure(request.id, ErrorCode.INTERNAL))

    def _handle(self, request: Request, station: str) -> Outcome:
        stored = self._stored_reply(request, station)
        if stored is not None:
            return Outcome(stored, repeated=True)
        args = request.args
        assert isinstance(args, StocktakeScanArgs)
        current = stocktake.open_stocktake(self._sessions)
        if current is None:
            reply = self._failure(request.id, ErrorCode.NO_STOCKTAKE)
        else:
            try:
                scanned = stocktake.scan(self._sessions, current.id, args.items, args.shelf,
                                         station, now=self._clock())
            except stocktake.StocktakeError as refusal:  # closed since we looked
                reply = self._failure(request.id, ErrorCode.NO_STOCKTAKE,
                                      refusal.text(self._language))
            else:
                result = self._result(current.id, current.number, current.name, scanned,
                                      args.shelf)
                reply = Reply.success(request.id, result)
        return self._store(request, station, reply)

    def _result(self, stocktake_id: int, number: int, name: str,
                scanned: stocktake.ScanResult, shelf: str | None) -> StocktakeScanResult:
        lines = [StocktakeLine(
            code=line.code, outcome=line.outcome.value,  # type: ignore[arg-type]
            flags=[flag for flag, on in (("withdrawn", line.withdrawn), ("on_loan", line.on_loan),
                                         ("misplaced", line.misplaced)) if on],
            item=line.copy.accession_number if line.copy else None,
            title=line.copy.title if line.copy else None,
            location=line.copy.location if line.copy else None) for line in scanned.lines]
        with self._sessions() as session:
            counted = session.scalar(select(func.count(StocktakeScan.id))
                                     .where(StocktakeScan.stocktake_id == stocktake_id)) or 0
            progress = _shelf_progress(session, stocktake_id, shelf) if shelf else None
        result = StocktakeScanResult(stocktake=number, name=name, items=lines,
                                     counted=counted, shelf=progress)
        for leave_out in ("title", "location"):
            if len(encode(result)) <= MAX_PAYLOAD_BYTES - _ENVELOPE_ROOM:
                break
            # A station drops a reply over the payload limit: the outcomes matter most.
            log.warning("stocktake.scan: %d lines do not fit one reply; without their %s",
                        len(lines), leave_out)
            lines = [line.model_copy(update={leave_out: None}) for line in lines]
            result = result.model_copy(update={"items": lines})
        return result

    # --- the idempotency record, as the circulation keeps it -------------------------

    def _stored_reply(self, request: Request, station: str) -> Reply | None:
        with self._sessions() as session:
            row = session.get(ProcessedRequest, request.id)
            if row is None:
                return None
            if row.station != station or row.op != request.op.value:
                # Never hand one station's answer to another.
                log.warning("request id %s from %s (%s) was already used by %s (%s)",
                            request.id, station, request.op.value, row.station, row.op)
                return self._failure(request.id, ErrorCode.BAD_REQUEST,
                                     f"{default_message(ErrorCode.BAD_REQUEST, self._language)} "
                                     "(this request id was already used)")
            return Reply.model_validate(row.reply)

    def _store(self, request: Request, station: str, reply: Reply) -> Outcome:
        try:
            with self._sessions.begin() as session:
                session.add(ProcessedRequest(
                    request_id=request.id, station=station, op=request.op.value,
                    reply=reply.model_dump(mode="json"), server_at=self._clock(),
                    offline=request.offline))
        except IntegrityError:
            # Another server process answered this id meanwhile: its answer stands.
            stored = self._stored_reply(request, station)
            if stored is None:
                raise
            return Outcome(stored, repeated=True)
        return Outcome(reply)

    def _failure(self, request_id: str, code: ErrorCode, message: str | None = None) -> Reply:
        return Reply.failure(request_id, code, message or default_message(code, self._language))


def _shelf_progress(session: Session, stocktake_id: int, shelf: str) -> ShelfProgress:
    """The copies the catalogue places on `shelf` (compared as server/stocktake.py does:
    trimmed, any case) and how many of them this stocktake has seen, wherever."""
    shelf = " ".join(shelf.split())
    expected, seen = session.execute(
        select(func.count(Copy.id), func.count(StocktakeScan.id)).select_from(Copy)
        .outerjoin(StocktakeScan, and_(StocktakeScan.copy_id == Copy.id,
                                       StocktakeScan.stocktake_id == stocktake_id))
        .where(Copy.status != CopyStatus.WITHDRAWN,
               func.upper(func.trim(Copy.location)) == func.upper(shelf))).one()
    return ShelfProgress(shelf=shelf, expected=expected, seen=seen)


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    # Without TCP_NODELAY each QoS 1 round trip waits ~40 ms for Nagle (STACK.md).
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class LibraryService:
    def __init__(self, config: ServerConfig, circulation: Circulation,
                 events: StationEvents | None = None,
                 wall_clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.config = config
        self.circulation = circulation
        self.site = config.site
        self.events = EventWorker(
            events or StationEvents(circulation.engine, config, circulation.clock),
            self._publish_alert)
        self.stations = StationRegistry(circulation.engine, config.stations.refresh_seconds)
        self.stocktakes = StocktakeScans(db.session_factory(circulation.engine), config,
                                         circulation.clock)
        # The machine's clock, not the circulation's: skew is between two real clocks.
        self._wall_clock = wall_clock
        self._skewed: set[str] = set()  # stations whose skew is already reported
        self.connected = threading.Event()
        self.requests_handled = 0
        self._stopping = False
        # Requests are handled on one worker thread, in arrival order, never on paho's
        # network thread: a write failing there (the broker gone mid-reply) makes paho
        # take its callback lock a second time and hang for good. One FIFO thread also
        # keeps each station's requests in the order they came (replay windows rely on it).
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=INBOX_LIMIT)
        self._worker: threading.Thread | None = None
        mqtt_config = config.mqtt
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=mqtt_config.client_id or f"thuvien-server-{self.site}",
            clean_session=True,
        )
        if mqtt_config.username:
            self.client.username_pw_set(mqtt_config.username, mqtt_config.password())
        mqtt_config.apply_tls(self.client)
        self.client.will_set(topics.server_status(self.site), OFFLINE_STATUS, qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_socket_open = _no_delay
        self._subscribe_mid: int | None = None
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # --- lifecycle ---------------------------------------------------------------

    def start(self, wait: float = 10.0) -> None:
        mqtt_config = self.config.mqtt
        self.events.start()
        self._worker = threading.Thread(target=self._work, name="requests", daemon=True)
        self._worker.start()
        self.client.connect_async(mqtt_config.host, mqtt_config.port, keepalive=mqtt_config.keepalive)
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            log.warning("broker %s:%s not reachable yet; retrying in the background",
                        mqtt_config.host, mqtt_config.port)

    def stop(self) -> None:
        """Say "offline" ourselves: the broker sends the will only on an unexpected drop."""
        self._stopping = True
        if self._worker is not None:
            # What came in is answered before we go.
            self._inbox.put(None)
            self._worker.join(timeout=10)
        self.events.stop()  # what is queued is stored, its alerts published, before we go
        if self.connected.is_set():
            info = self.client.publish(topics.server_status(self.site), OFFLINE_STATUS, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except RuntimeError:
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def _status(self) -> bytes:
        return encode(Status(state="online", kind="server", version=__version__,
                             at=dt.datetime.now(dt.timezone.utc)))

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        _result, self._subscribe_mid = client.subscribe(
            [(topics.station_filter(self.site, "request"), 1),
             (topics.station_filter(self.site, "event"), 1)])

    def _on_subscribe(self, client: mqtt.Client, _userdata: Any, mid: int, reasons: Any,
                      _properties: Any) -> None:
        # "Online" (and `connected`) only once the broker has the subscriptions: a request
        # sent on the strength of it, by a station or a test, would otherwise be lost.
        if mid != self._subscribe_mid:
            return
        if any(reason.is_failure for reason in reasons):
            log.error("broker refused the subscriptions: %s", reasons)
            return
        client.publish(topics.server_status(self.site), self._status(), qos=1, retain=True)
        self.connected.set()
        log.info("connected to the broker; serving site %s", self.site)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        self.connected.clear()
        if not self._stopping:
            log.warning("lost the broker (%s); reconnecting", reason)

    # --- requests ----------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._inbox.put_nowait((message.topic, message.payload))
        except queue.Full:
            # The station retries (same id) once its request times out: nothing is lost.
            log.error("dropped a message on %s: %d messages wait already", message.topic, INBOX_LIMIT)

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            topic, payload = item
            try:
                self._handle(topic, payload)
            except Exception:  # the worker must survive anything a station sends
                log.exception("unexpected error handling a message on %s", topic)

    def _handle(self, topic: str, payload: bytes) -> None:
        try:
            where = topics.parse(topic)
        except ProtocolError as exc:
            log.warning("dropped a message: %s", exc.detail)
            return
        if where.site != self.site or where.station is None \
                or where.channel not in ("request", "event"):
            log.warning("dropped a message on %s: not a request or event of site %s",
                        topic, self.site)
            return
        station = where.station
        if where.channel == "event":
            if self._registration_required() and self.stations.kind(station) is None:
                log.warning("dropped an event from %s: not a registered station", station)
                return
            self.events.submit(station, payload)
            return
        if len(payload) > MAX_PAYLOAD_BYTES:
            # Not even parsed: a usable id cannot be trusted from a payload this size.
            log.warning("dropped a %d-byte request from %s: over the %d-byte limit",
                        len(payload), station, MAX_PAYLOAD_BYTES)
            return
        try:
            request = parse_request(payload)
        except ProtocolError as exc:
            if exc.request_id is None:
                log.warning("dropped a request from %s with no usable id: %s", station, exc.detail)
                return
            log.warning("bad request %s from %s: %s", exc.request_id, station, exc.detail)
            self._reply(station, self.circulation.bad_request(exc.request_id, exc.detail))
            return
        refusal = self.authorize(station, request)
        if refusal is not None:
            self._reply(station, refusal)
            return
        outcome = self.answer(request, station)
        self.requests_handled += 1
        self._reply(station, outcome.reply)
        for entry in outcome.entries:
            self.client.publish(topics.ledger(self.site), encode(entry), qos=1)
        for alert in outcome.alerts:
            self._publish_alert(alert)
        if not request.offline and not outcome.repeated:
            self.check_clock(station, request)

    def answer(self, request: Request, station: str) -> Outcome:
        """The answer to an authorized request, committed, ready to publish."""
        if request.op is Op.STOCKTAKE_SCAN:
            return self.stocktakes.handle_request(request, station)
        return self.circulation.handle_request(request, station)

    # --- who may ask what --------------------------------------------------------

    def _registration_required(self) -> bool:
        return self.config.stations.require_registration

    def authorize(self, station: str, request: Request) -> Reply | None:
        """None when `station` may make `request`, else the `unauthorized` reply (not
        stored: once registered, the station's retry is served)."""
        if not self._registration_required():
            return None
        kind = self.stations.kind(station)
        if kind is not None and self.stations.may(station, request.op):
            return None
        texts = _TEXTS[self.config.language]
        if kind is None:
            log.warning("unauthorized: request %s (%s) from %s, not a registered station",
                        request.id, request.op.value, station)
            message = texts["unregistered"].format(station=station)
        else:
            log.warning("unauthorized: request %s from %s, a %s, which may not do %s",
                        request.id, station, kind.value, request.op.value)
            message = texts["not_allowed"].format(station=station, kind=kind.value,
                                                  op=request.op.value)
        return Reply.failure(request.id, ErrorCode.UNAUTHORIZED, message)

    def check_clock(self, station: str, request: Request) -> None:
        skew = (request.at - self._wall_clock()).total_seconds()
        if abs(skew) <= self.config.stations.clock_skew_alert_seconds:
            self._skewed.discard(station)
            return
        if station in self._skewed:
            return
        self._skewed.add(station)
        log.warning("station %s: its clock is %+.0f s off the server's (request %s)",
                    station, skew, request.id)
        # The alert's row is written on the events worker, off this thread.
        self.events.submit_job(station, lambda events: events.clock_skew(
            station, skew, request.at))

    def _publish_alert(self, alert: Alert) -> None:
        # From the events worker: paho queues it and its network thread sends it.
        self.client.publish(topics.alert(self.site), encode(alert), qos=1)

    def _reply(self, station: str, reply: Reply) -> None:
        self.client.publish(topics.station_topic(self.site, station, "reply"), encode(reply), qos=1)
