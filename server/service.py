"""The server's MQTT side: requests in, replies, ledger entries and status out.

Every inbound payload is parsed into a protocol model here and each rejection is logged
in this one place. Requests are handled on paho's network thread, one at a time: the
circulation core is fast (a few SQLite statements), and one writer is what SQLite wants.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import MAX_PAYLOAD_BYTES, ProtocolError, Reply, Status, encode, parse_request, topics
from protocol.models import OFFLINE_STATUS
from server import __version__
from server.circulation import Circulation
from server.config import ServerConfig

log = logging.getLogger("thuvien.server")

def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    # Without TCP_NODELAY each QoS 1 round trip waits ~40 ms for Nagle (STACK.md).
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class LibraryService:
    def __init__(self, config: ServerConfig, circulation: Circulation) -> None:
        self.config = config
        self.circulation = circulation
        self.site = config.site
        self.connected = threading.Event()
        self.requests_handled = 0
        self._stopping = False
        mqtt_config = config.mqtt
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=mqtt_config.client_id or f"thuvien-server-{self.site}",
            clean_session=True,
        )
        if mqtt_config.username:
            self.client.username_pw_set(mqtt_config.username, mqtt_config.password())
        self.client.will_set(topics.server_status(self.site), OFFLINE_STATUS, qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_socket_open = _no_delay
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # --- lifecycle ---------------------------------------------------------------

    def start(self, wait: float = 10.0) -> None:
        mqtt_config = self.config.mqtt
        self.client.connect_async(mqtt_config.host, mqtt_config.port, keepalive=mqtt_config.keepalive)
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            log.warning("broker %s:%s not reachable yet; retrying in the background",
                        mqtt_config.host, mqtt_config.port)

    def stop(self) -> None:
        """Say "offline" ourselves: the broker sends the will only on an unexpected drop."""
        self._stopping = True
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
        client.subscribe(topics.station_filter(self.site, "request"), qos=1)
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
            self._handle(message.topic, message.payload)
        except Exception:  # the network thread must survive anything a station sends
            log.exception("unexpected error handling a message on %s", message.topic)

    def _handle(self, topic: str, payload: bytes) -> None:
        try:
            where = topics.parse(topic)
        except ProtocolError as exc:
            log.warning("dropped a message: %s", exc.detail)
            return
        if where.site != self.site or where.channel != "request" or where.station is None:
            log.warning("dropped a message on %s: not a request of site %s", topic, self.site)
            return
        station = where.station
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
            self.client.loop_write()
            return
        reply, entries = self.circulation.handle(request, station)
        self.requests_handled += 1
        self._reply(station, reply)
        for entry in entries:
            self.client.publish(topics.ledger(self.site), encode(entry), qos=1)
        # We are on paho's network thread, which reads a batch of packets before it
        # writes: without this the reply waits for the requests queued behind it.
        self.client.loop_write()

    def _reply(self, station: str, reply: Reply) -> None:
        self.client.publish(topics.station_topic(self.site, station, "reply"), encode(reply), qos=1)
