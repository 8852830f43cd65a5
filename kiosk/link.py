"""The station's MQTT link: the only kiosk code that imports paho.

It implements `Backend` (one request, one reply, matched by id), keeps the station's
retained status with a last will, and hands commands to a callback. For the offline
store-and-forward backend (`kiosk/offline.py`) it also sends a prepared request (its
own id, station time and `offline` flag), hands on replies nobody waits for any more
(`on_late_reply`), follows the server's retained status, and reports the outbox's size.

Reconnection backs off from about a second to about half a minute, with the bounds
drawn again at each disconnect, so that a school's stations do not all knock on a
rebooted broker in the same second.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ValidationError

from kiosk.backend import BackendUnavailable
from protocol import (
    EVENT_DATA_BY_TYPE,
    Command,
    Event,
    LedgerEntry,
    Op,
    ProtocolError,
    Reply,
    Request,
    Status,
    encode,
    parse_model,
    parse_reply,
    topics,
)
from protocol.configfile import MqttConfig
from protocol.models import OFFLINE_STATUS, DeviceState, StationKind

log = logging.getLogger("thuvien.kiosk.link")

VERSION = "0.1.0"
# After a reconnection with no server status retained on the broker, how long to wait
# before trying the server anyway.
SERVER_STATUS_GRACE_S = 3.0


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    # Without TCP_NODELAY each QoS 1 round trip waits ~40 ms for Nagle (STACK.md).
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Reply | None = None


class MqttLink:
    def __init__(self, site: str, station: str, kind: StationKind, mqtt_config: MqttConfig,
                 *, request_timeout: float = 5.0,
                 on_command: Callable[[Command], None] | None = None,
                 on_ledger: Callable[[LedgerEntry], None] | None = None,
                 on_connect: Callable[[], None] | None = None,
                 on_late_reply: Callable[[Reply], None] | None = None) -> None:
        self.site = site
        self.station = station
        self.kind = kind
        self.request_timeout = request_timeout
        self.on_command = on_command
        # A gate keeps its on-loan set current from the site's ledger topic.
        self.on_ledger = on_ledger
        # Called on the network thread after each (re)connection; it must not wait for a
        # reply there (the reply arrives on that same thread): start a thread to resync.
        self.on_connect = on_connect
        # A reply to a request that timed out (its id may be in the outbox now). Called
        # on the network thread: it must not wait for the network.
        self.on_late_reply = on_late_reply
        # How many requests wait in the outbox, for the status; None: no outbox.
        self.outbox_size: Callable[[], int] | None = None
        # The server's retained status: cleared when it says (or its will says) offline.
        self.server_online = threading.Event()
        self.server_online.set()  # unknown until its status arrives: try it
        self._server_said = False  # a server status arrived since the first connection
        self._connections = 0
        self.devices: dict[str, DeviceState] = {}
        self.state: str = "online"
        self.connected = threading.Event()
        self._stopping = False
        self._config = mqtt_config
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._topic_request = topics.station_topic(site, station, "request")
        self._topic_reply = topics.station_topic(site, station, "reply")
        self._topic_status = topics.station_topic(site, station, "status")
        self._topic_command = topics.station_topic(site, station, "command")
        self._topic_event = topics.station_topic(site, station, "event")
        self._topic_ledger = topics.ledger(site)
        self._topic_server_status = topics.server_status(site)
        # The station logs in with its id as username so broker ACLs can pin it (%u).
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=mqtt_config.client_id or f"{site}-{station}",
                                  clean_session=True)
        self.client.username_pw_set(mqtt_config.username or station, mqtt_config.password())
        mqtt_config.apply_tls(self.client)
        self.client.will_set(self._topic_status, OFFLINE_STATUS, qos=1, retain=True)
        self._jitter_reconnect()
        self.client.on_socket_open = _no_delay
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # --- lifecycle ---------------------------------------------------------------

    def start(self, wait: float = 10.0) -> bool:
        self.client.connect_async(self._config.host, self._config.port, keepalive=self._config.keepalive)
        self.client.loop_start()
        return self.connected.wait(wait) if wait else False

    def stop(self) -> None:
        self._stopping = True
        if self.connected.is_set():
            # The broker sends the will only on an unexpected drop: say it ourselves.
            info = self.client.publish(self._topic_status, OFFLINE_STATUS, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except RuntimeError:
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def set_device(self, name: str, state: DeviceState) -> None:
        if self.devices.get(name) != state:
            self.devices[name] = state
            self.publish_status()

    def publish_status(self) -> None:
        if not self.connected.is_set():
            return
        outbox = 0
        if self.outbox_size is not None:
            try:
                outbox = max(0, self.outbox_size())
            except Exception:  # a status must go out even if the outbox cannot be read
                log.exception("could not count the outbox")
        status = Status(state=self.state, kind=self.kind, version=VERSION,  # type: ignore[arg-type]
                        at=dt.datetime.now(dt.timezone.utc).astimezone(), devices=dict(self.devices),
                        outbox=outbox)
        self.client.publish(self._topic_status, encode(status), qos=1, retain=True)

    def publish_event(self, type_: str, data: BaseModel) -> bool:
        """Publish one event (QoS 1); False when the broker is not connected, in which case
        paho keeps nothing: the caller decides whether the event matters later."""
        expected = EVENT_DATA_BY_TYPE.get(type_)
        if expected is not None and not isinstance(data, expected):
            raise TypeError(f"event {type_} carries {expected.__name__}, not {type(data).__name__}")
        event = Event(id=str(uuid.uuid4()), type=type_, at=dt.datetime.now(dt.timezone.utc).astimezone(),
                      data=data.model_dump(mode="json"))
        if not self.connected.is_set():
            log.info("event %s not sent (offline): %s", type_, event.data)
            return False
        self.client.publish(self._topic_event, encode(event), qos=1)
        return True

    # --- Backend -----------------------------------------------------------------

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        return self.send(make_request(op, args), timeout=timeout)

    def send(self, request: Request, *, timeout: float | None = None) -> Reply:
        """Publish a prepared request (its id, `at` and `offline` as given) and wait for
        its reply. Raises BackendUnavailable when not connected or no reply came in time;
        a reply that comes later goes to `on_late_reply`."""
        if not self.connected.is_set():
            raise BackendUnavailable("not connected to the broker")
        op = request.op
        pending = _Pending()
        with self._lock:
            self._pending[request.id] = pending
        try:
            self.client.publish(self._topic_request, encode(request), qos=1)
            if not pending.event.wait(self.request_timeout if timeout is None else timeout):
                raise BackendUnavailable(f"no reply to {op.value} within the timeout")
            assert pending.reply is not None
            return pending.reply
        finally:
            with self._lock:
                self._pending.pop(request.id, None)

    # --- paho callbacks ----------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        subscriptions = [(self._topic_reply, 1), (self._topic_command, 1),
                         (self._topic_server_status, 1)]
        if self.on_ledger is not None:
            subscriptions.append((self._topic_ledger, 1))
        client.subscribe(subscriptions)
        self.connected.set()
        self.publish_status()
        # No retained server status at all (a server that never said), after a moment:
        # try it, as at the first start.
        generation = self._connections = getattr(self, "_connections", 0) + 1
        timer = threading.Timer(SERVER_STATUS_GRACE_S, self._assume_server_online, args=(generation,))
        timer.daemon = True
        timer.start()
        if self.on_connect is not None:
            self.on_connect()

    def _assume_server_online(self, generation: int) -> None:
        if generation == self._connections and self.connected.is_set() and not self._server_said:
            self.server_online.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        self.connected.clear()
        # Whether the server is there is unknown again until its (retained) status comes
        # back: replaying into a server that is still down would wait out a timeout.
        self.server_online.clear()
        if not self._stopping:
            log.warning("lost the broker (%s); reconnecting", reason)
            self._jitter_reconnect()

    def _jitter_reconnect(self) -> None:
        # paho doubles the delay from min to max; new bounds at each drop spread the
        # stations of a school over time when the broker comes back.
        self.client.reconnect_delay_set(min_delay=max(1, round(random.uniform(0.5, 2.0))),
                                        max_delay=round(random.uniform(20, 40)))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == self._topic_reply:
                self._on_reply(message.payload)
            elif message.topic == self._topic_command:
                command = parse_model(Command, message.payload)
                if self.on_command is not None:
                    self.on_command(command)
            elif message.topic == self._topic_server_status:
                self._on_server_status(message.payload)
            elif message.topic == self._topic_ledger:
                entry = parse_model(LedgerEntry, message.payload)
                if self.on_ledger is not None:
                    self.on_ledger(entry)
        except ProtocolError as exc:
            log.warning("dropped a message on %s: %s", message.topic, exc.detail)
        except Exception:
            log.exception("unexpected error handling a message on %s", message.topic)

    def _on_server_status(self, payload: bytes) -> None:
        if not payload:
            return  # a retained status being cleared
        try:
            status = parse_model(Status, payload)
        except ProtocolError as exc:
            log.warning("unreadable server status: %s", exc.detail)
            return
        self._server_said = True
        if status.state == "online":
            if not self.server_online.is_set():
                log.info("the server is online")
            self.server_online.set()
        else:
            log.warning("the server says it is %s", status.state)
            self.server_online.clear()

    def _on_reply(self, payload: bytes) -> None:
        reply = parse_reply(payload)
        with self._lock:
            pending = self._pending.get(reply.id)
        if pending is None:
            # The request timed out (or was sent before a restart): whoever queued it
            # for a replay wants the answer, so the replay need not ask again.
            if self.on_late_reply is None:
                log.info("late or unknown reply %s dropped", reply.id)
                return
            log.info("late reply %s", reply.id)
            self.on_late_reply(reply)
            return
        pending.reply = reply
        pending.event.set()


def make_request(op: Op, args: BaseModel) -> Request:
    """A new request: a fresh id (the idempotency key) and the station's time now."""
    try:
        return Request(id=str(uuid.uuid4()), op=op, at=dt.datetime.now(dt.timezone.utc).astimezone(),
                       args=args)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ValueError(f"args of {op.value} are not {type(args).__name__}: {exc}") from exc
