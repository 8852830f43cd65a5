"""The station's MQTT link: the only kiosk code that imports paho.

It implements `Backend` (one request, one reply, matched by id), keeps the station's
retained status with a last will, and hands commands to a callback.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel

from kiosk.backend import BackendUnavailable
from protocol import Command, Op, ProtocolError, Reply, Request, Status, encode, parse_model, parse_reply, topics
from protocol.configfile import MqttConfig
from protocol.models import OFFLINE_STATUS, DeviceState, StationKind

log = logging.getLogger("thuvien.kiosk.link")

VERSION = "0.1.0"
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
                 on_command: Callable[[Command], None] | None = None) -> None:
        self.site = site
        self.station = station
        self.kind = kind
        self.request_timeout = request_timeout
        self.on_command = on_command
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
        # The station logs in with its id as username so broker ACLs can pin it (%u).
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=mqtt_config.client_id or f"{site}-{station}",
                                  clean_session=True)
        self.client.username_pw_set(mqtt_config.username or station, mqtt_config.password())
        self.client.will_set(self._topic_status, OFFLINE_STATUS, qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
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
        status = Status(state=self.state, kind=self.kind, version=VERSION,  # type: ignore[arg-type]
                        at=dt.datetime.now(dt.timezone.utc).astimezone(), devices=dict(self.devices),
                        outbox=0)
        self.client.publish(self._topic_status, encode(status), qos=1, retain=True)

    # --- Backend -----------------------------------------------------------------

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        if not self.connected.is_set():
            raise BackendUnavailable("not connected to the broker")
        request = Request(id=str(uuid.uuid4()), op=op, at=dt.datetime.now(dt.timezone.utc).astimezone(),
                          args=args)  # type: ignore[arg-type]
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
        client.subscribe([(self._topic_reply, 1), (self._topic_command, 1)])
        self.connected.set()
        self.publish_status()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        self.connected.clear()
        if not self._stopping:
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == self._topic_reply:
                self._on_reply(message.payload)
            elif message.topic == self._topic_command:
                command = parse_model(Command, message.payload)
                if self.on_command is not None:
                    self.on_command(command)
        except ProtocolError as exc:
            log.warning("dropped a message on %s: %s", message.topic, exc.detail)
        except Exception:
            log.exception("unexpected error handling a message on %s", message.topic)

    def _on_reply(self, payload: bytes) -> None:
        reply = parse_reply(payload)
        with self._lock:
            pending = self._pending.get(reply.id)
        if pending is None:
            # A reply that arrives after its request timed out: nobody waits for it now.
            log.info("late or unknown reply %s dropped", reply.id)
            return
        pending.reply = reply
        pending.event.set()
