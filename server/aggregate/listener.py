"""The upward topics off the upper broker, into `Ingest`.

- A persistent session: MQTT 3.1.1 with clean_session False and a stable client id
  (`AggregateConfig.client_id()`), subscribed to `protocol.upward.upward_filter()` at
  QoS 1. While the aggregate server is down, the broker queues what the schools send.
- Acknowledged after commit: paho's manual acks. A message is acknowledged only once
  what it carries is committed (or once it is known to be malformed), so a crash
  between receipt and commit loses nothing: the broker sends it again, and (site, seq)
  makes the second copy count for nothing.
- One writer thread: paho's thread only queues messages; the writer parses them and
  flushes every `flush_seconds`, at `flush_rows` entries, or when `max_unacked` messages
  wait for their acknowledgement (the broker sends no more than its in-flight window).
  If the database is unreachable, the writer keeps the messages and tries again; the
  broker, getting no acks, stops sending after its window.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.exc import DBAPIError

from protocol.upward import upward_filter
from server.aggregate.config import AggregateConfig
from server.aggregate.ingest import Ingest, Malformed, Parsed, WriteResult, parse_message, utc_now

log = logging.getLogger("thuvien.aggregate")

__all__ = ["UpwardListener"]

_STOP = object()
# Messages waiting for the writer: with acks after commit the broker's window bounds it.
INBOX_LIMIT = 100_000


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    # Without TCP_NODELAY each QoS 1 acknowledgement waits ~40 ms for Nagle (STACK.md).
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class UpwardListener:
    def __init__(self, config: AggregateConfig, ingest: Ingest, *, retry_seconds: float = 2.0) -> None:
        self.config = config
        self.ingest = ingest
        self.retry_seconds = retry_seconds
        self.connected = threading.Event()   # connected and subscribed
        self.totals = WriteResult()      # since start, for logs and tests
        self.flushes = 0
        self._inbox: queue.Queue[Any] = queue.Queue(maxsize=INBOX_LIMIT)
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id(),
                                  clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        mqtt_config = config.mqtt
        if mqtt_config.username:
            self.client.username_pw_set(mqtt_config.username, mqtt_config.password())
        mqtt_config.apply_tls(self.client)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_socket_open = _no_delay
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, wait: float = 10.0) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="aggregate-ingest", daemon=True)
        self._writer.start()
        mqtt_config = self.config.mqtt
        self.client.connect_async(mqtt_config.host, mqtt_config.port, keepalive=mqtt_config.keepalive)
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            log.warning("upper broker %s:%s not reachable yet; retrying in the background",
                        mqtt_config.host, mqtt_config.port)

    def stop(self, timeout: float = 10.0) -> None:
        """Write and acknowledge what has arrived, then disconnect (the session stays on
        the broker, which queues for us until we are back)."""
        self._stopping.set()
        self._inbox.put(_STOP)
        if self._writer is not None:
            self._writer.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho's thread ------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            log.error("the upper broker refused the connection: %s", reason)
            return
        # Subscribing again is harmless when the broker kept the session.
        client.subscribe(upward_filter(), qos=1)
        log.info("listening to %s (session %s)", upward_filter(),
                 "resumed" if getattr(flags, "session_present", False) else "new")

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any,
                      _properties: Any) -> None:
        # Ready only once the broker has the subscription: a school's message published
        # before that would reach nobody (a new session has nothing queued yet).
        if any(getattr(reason, "is_failure", False) for reason in reasons):
            log.error("the upper broker refused the subscription to %s: %s", upward_filter(), reasons)
            return
        self.connected.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("lost the upper broker (%s); reconnecting", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put((message.topic, message.payload, message.mid, message.qos, utc_now()))

    # --- the writer ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        ingest = self.config.ingest
        parsed: list[Parsed] = []
        acks: list[tuple[int, int]] = []
        rows = malformed = 0
        first: float | None = None
        stopping = False
        while True:
            timeout = 0.5 if first is None else max(0.0, ingest.flush_seconds - (time.monotonic() - first))
            try:
                item = self._inbox.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                stopping = True
            elif item is not None:
                topic, payload, mid, qos, received_at = item
                if first is None:
                    first = time.monotonic()
                if qos > 0:
                    acks.append((mid, qos))
                try:
                    message = parse_message(topic, payload, received_at)
                except Malformed as exc:
                    self.ingest.rejected(topic, str(exc))
                    malformed += 1
                else:
                    if message is not None:
                        parsed.append(message)
                        rows += message.rows
            due = first is not None and (
                stopping or rows >= ingest.flush_rows or len(acks) >= ingest.max_unacked
                or time.monotonic() - first >= ingest.flush_seconds)
            if due:
                if not self._flush(parsed, malformed):
                    return  # stopping with the database down: the broker sends them again
                for mid, qos in acks:
                    self.client.ack(mid, qos)
                parsed, acks, rows, malformed, first = [], [], 0, 0, None
            if stopping and self._inbox.empty():
                return

    def _flush(self, parsed: list[Parsed], malformed: int) -> bool:
        """Write until it works; False only if asked to stop while the database is down."""
        while True:
            try:
                result = self.ingest.write(parsed, malformed)
            except DBAPIError as exc:
                log.error("cannot write to the aggregate database (%s); trying again in %.0f s",
                          type(exc.orig).__name__ if exc.orig else exc, self.retry_seconds)
            except Exception:
                # Never let the writer die: unacknowledged messages would pile up unseen.
                log.exception("the ingest failed; trying again in %.0f s", self.retry_seconds)
            else:
                self.totals.add(result)
                self.flushes += 1
                return True
            if self._stopping.wait(self.retry_seconds):
                return False
