"""The stations as they are now, kept in memory from the broker, pushed to browsers.

`StationMonitor` is the web's own MQTT client inside the server process. It subscribes
to every station's retained status (whose last will is `{"v":1,"state":"offline"}`),
their events, the ledger and the alert topic, keeps a `StationBoard`, and hands each
change to a `Hub`, which every open server-sent-events stream listens to. paho's network
thread never touches a browser: it only puts a message on each listener's asyncio queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import Command, LedgerEntry, ProtocolError, Status, encode, parse_model, topics
from protocol.configfile import MqttConfig

log = logging.getLogger("thuvien.web")

# A browser that falls this far behind is dropped; its page reconnects and resyncs.
LISTENER_QUEUE = 500


@dataclass(frozen=True)
class StationView:
    name: str
    kind: str | None = None
    state: str = "unknown"          # online | offline | out_of_service | unknown
    since: dt.datetime | None = None
    devices: dict[str, str] = field(default_factory=dict)
    outbox: int = 0
    version: str | None = None
    last_transaction: dt.datetime | None = None

    @property
    def faulty(self) -> bool:
        return any(state == "fault" for state in self.devices.values())


class StationBoard:
    """Every station's last known state; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: dict[str, StationView] = {}

    def seed(self, registered: Iterable[tuple[str, str]],
             last_transactions: dict[str, dt.datetime]) -> None:
        """What the database knows before the broker says anything."""
        with self._lock:
            for name, kind in registered:
                self._views.setdefault(name, StationView(name=name, kind=kind))
            for name, when in last_transactions.items():
                view = self._views.get(name, StationView(name=name))
                self._views[name] = replace(view, last_transaction=when)

    def apply_status(self, name: str, status: Status, now: dt.datetime,
                     retained: bool) -> StationView:
        with self._lock:
            old = self._views.get(name, StationView(name=name))
            since = old.since
            if status.state != old.state or since is None:
                # The last will carries no time: a live one happened now; a retained one
                # at some moment before we connected, which we cannot know.
                since = status.at or (None if retained else now)
            if status.state == "offline":
                # The will says only "offline": keep what the station last told us.
                view = replace(old, state="offline", since=since)
            else:
                view = replace(old, state=status.state, since=since, kind=status.kind or old.kind,
                               devices=dict(status.devices), outbox=status.outbox,
                               version=status.version or old.version)
            self._views[name] = view
            return view

    def apply_ledger(self, entry: LedgerEntry) -> StationView:
        with self._lock:
            old = self._views.get(entry.station, StationView(name=entry.station))
            when = entry.server_at
            if old.last_transaction is not None and old.last_transaction > when:
                when = old.last_transaction
            view = replace(old, last_transaction=when)
            self._views[entry.station] = view
            return view

    def get(self, name: str) -> StationView | None:
        with self._lock:
            return self._views.get(name)

    def snapshot(self) -> list[StationView]:
        with self._lock:
            return sorted(self._views.values(), key=lambda view: view.name)


Message = tuple[str, Any]  # ("station", StationView) | ("alerts", None) | ("live", bool)


class Hub:
    """Fan-out of messages from any thread to the asyncio queues of open streams."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[asyncio.Queue[Message | None], asyncio.AbstractEventLoop] = {}
        self.closed = False

    def listen(self) -> asyncio.Queue[Message | None]:
        """A queue for the calling coroutine's loop; `None` on it means: stop."""
        queue: asyncio.Queue[Message | None] = asyncio.Queue(LISTENER_QUEUE)
        with self._lock:
            if self.closed:
                queue.put_nowait(None)
            self._listeners[queue] = asyncio.get_running_loop()
        return queue

    def forget(self, queue: asyncio.Queue[Message | None]) -> None:
        with self._lock:
            self._listeners.pop(queue, None)

    def publish(self, message: Message | None) -> None:
        with self._lock:
            listeners = list(self._listeners.items())
        for queue, loop in listeners:
            try:
                loop.call_soon_threadsafe(self._offer, queue, message)
            except RuntimeError:  # that loop has closed: the stream is gone
                self.forget(queue)

    def _offer(self, queue: asyncio.Queue[Message | None], message: Message | None) -> None:
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:
            self.forget(queue)
            queue.get_nowait()
            queue.put_nowait(None)  # too slow: end this stream, the page reconnects

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self.publish(None)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._listeners)


class CommandError(Exception):
    pass


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    # Without TCP_NODELAY every QoS 1 exchange waits ~40 ms for Nagle (STACK.md).
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class StationMonitor:
    def __init__(self, site: str, mqtt_config: MqttConfig, board: StationBoard | None = None,
                 hub: Hub | None = None, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self.site = site
        self.mqtt_config = mqtt_config
        self.board = board or StationBoard()
        self.hub = hub or Hub()
        self.clock = clock
        self.connected = threading.Event()
        self._stopping = False
        self._alerts_timer: threading.Timer | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"thuvien-web-{site}-{uuid.uuid4().hex[:8]}",
                                  clean_session=True)
        if mqtt_config.username:
            self.client.username_pw_set(mqtt_config.username, mqtt_config.password())
        mqtt_config.apply_tls(self.client)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_socket_open = _no_delay
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # --- lifecycle -----------------------------------------------------------------

    def start(self, wait: float = 10.0) -> bool:
        self.client.connect_async(self.mqtt_config.host, self.mqtt_config.port,
                                  keepalive=self.mqtt_config.keepalive)
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            log.warning("web: broker %s:%s not reachable yet; retrying in the background",
                        self.mqtt_config.host, self.mqtt_config.port)
        return self.connected.is_set()

    def stop(self) -> None:
        self._stopping = True
        if self._alerts_timer is not None:
            self._alerts_timer.cancel()
        self.client.disconnect()
        self.client.loop_stop()
        self.hub.close()

    # --- commands ------------------------------------------------------------------

    def send_command(self, station: str, cmd: str, args: dict[str, Any] | None = None,
                     timeout: float = 3.0) -> Command:
        """Publish a Command on the station's command topic; waits for the broker's ack."""
        if not self.connected.is_set():
            raise CommandError("the web is not connected to the broker")
        command = Command(id=str(uuid.uuid4()), cmd=cmd, args=args or {})  # type: ignore[arg-type]
        info = self.client.publish(topics.station_topic(self.site, station, "command"),
                                   encode(command), qos=1)
        try:
            info.wait_for_publish(timeout=timeout)
        except (RuntimeError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if not info.is_published():
            raise CommandError("the broker did not acknowledge the command")
        return command

    # --- paho callbacks (its network thread) ---------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            log.error("web: the broker refused the connection: %s", reason)
            return
        client.subscribe([(topics.station_filter(self.site, "status"), 1),
                          (topics.station_filter(self.site, "event"), 1),
                          (topics.ledger(self.site), 1),
                          (topics.alert(self.site), 1)])
        self.connected.set()
        self.hub.publish(("live", True))
        self.hub.publish(("alerts", None))  # alerts may have come while we were away

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        self.connected.clear()
        if not self._stopping:
            log.warning("web: lost the broker (%s); reconnecting", reason)
            self.hub.publish(("live", False))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self.handle(message.topic, message.payload, bool(message.retain))
        except ProtocolError as exc:
            log.warning("web: dropped a message on %s: %s", message.topic, exc.detail)
        except Exception:  # nothing a station sends may stop the monitor
            log.exception("web: unexpected error handling a message on %s", message.topic)

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> None:
        where = topics.parse(topic)
        if where.channel == "status" and where.station:
            if not payload:
                return  # a cleared retained status: nothing to show
            status = parse_model(Status, payload)
            self.hub.publish(("station", self.board.apply_status(
                where.station, status, self.clock(), retained)))
        elif where.channel == "ledger":
            entry = parse_model(LedgerEntry, payload)
            self.hub.publish(("station", self.board.apply_ledger(entry)))
        elif where.channel == "alert":
            self.hub.publish(("alerts", None))
        elif where.channel == "event":
            # Events that resolve an alert (device.ok, an emptied return box) change the
            # table without an alert message: look again once the server has stored them.
            self._alerts_later()

    def _alerts_later(self, delay: float = 0.5) -> None:
        if self._alerts_timer is not None and self._alerts_timer.is_alive():
            return
        self._alerts_timer = threading.Timer(delay, self.hub.publish, args=(("alerts", None),))
        self._alerts_timer.daemon = True
        self._alerts_timer.start()
