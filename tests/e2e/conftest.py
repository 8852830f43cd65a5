"""A small library on a real SQLite file, its server on a real Mosquitto, and stations."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kiosk.link import MqttLink
from protocol.configfile import MqttConfig
from server import db
from server import stations as registry
from server.app import RunningServer, start_server
from server.config import ServerConfig
from server.models import LedgerEntry
from thuvien.broker import MosquittoBroker

from e2e_library import START, WallClock, fill, library_config

@dataclass
class Library:
    config: ServerConfig
    clock: WallClock
    server: RunningServer
    broker: MosquittoBroker
    links: list[MqttLink] = field(default_factory=list)

    def register(self, name: str, kind: str) -> None:
        """Register `name` as a station of `kind`; the running server sees it at once."""
        registry.register(self.server.engine, name, kind)
        self.server.service.stations.invalidate()

    def station(self, name: str = "kiosk-1", kind: str | None = None) -> MqttLink:
        """A connected station link; with `kind`, `name` is registered as that kind first
        (without, a name not registered yet becomes a kiosk)."""
        if kind is not None or registry.get(self.server.engine, name) is None:
            self.register(name, kind or "kiosk")
        link = MqttLink(self.config.site, name, kind or "kiosk",
                        MqttConfig(host="127.0.0.1", port=self.broker.port), request_timeout=5.0)
        assert link.start(wait=10), "the station could not connect to the broker"
        self.links.append(link)
        return link

    def lend(self, item: str, patron: str = "HS-2025-0001") -> None:
        """A checkout at kiosk-1, as a reader would make it."""
        from protocol import CheckoutArgs, Op

        reply = self.station("kiosk-1").request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=patron, item=item))
        assert reply.ok, reply

    def ledger_count(self) -> int:
        with db.session_factory(self.server.engine)() as session:
            return session.scalar(select(func.count()).select_from(LedgerEntry)) or 0


@pytest.fixture
def library_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'library.db'}"
    db.upgrade(url)
    fill(url)
    return url


@pytest.fixture
def library(mosquitto: MosquittoBroker, site: str, library_url: str) -> Iterator[Library]:
    clock = WallClock(START)
    config = library_config(site, library_url, mosquitto.port)
    server = start_server(config, clock=clock)
    assert server.service.connected.wait(10), "the server could not connect to the broker"
    lib = Library(config=config, clock=clock, server=server, broker=mosquitto)
    yield lib
    for link in lib.links:
        link.stop()
    server.stop()


@pytest.fixture
def station(library: Library) -> Callable[..., MqttLink]:
    return library.station


class RawClient:
    """A plain MQTT client that publishes any bytes and collects what it receives."""

    def __init__(self, port: int, client_id: str) -> None:
        import queue
        import socket

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def subscribe(self, topic: str) -> None:
        result, mid = self.client.subscribe(topic, qos=1)
        assert result == 0
        # Wait for the SUBACK by a round trip of our own on a private topic.
        probe = f"probe/{id(self)}/{mid}"
        self.client.subscribe(probe, qos=1)
        self.client.publish(probe, b"x", qos=1)
        while True:
            topic, _payload, _retain = self.messages.get(timeout=5)
            if topic == probe:
                return
            self.messages.put((topic, _payload, _retain))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=5)

    def next(self, timeout: float = 5.0) -> tuple[str, bytes, bool]:
        return self.messages.get(timeout=timeout)

    def next_alert(self, type_: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        """The next alert of `type_` on the alert topic (others are skipped)."""
        from protocol import Alert, parse_model

        deadline = time.monotonic() + timeout
        while True:
            _topic, payload, _retained = self.next(timeout=max(0.01, deadline - time.monotonic()))
            alert = parse_model(Alert, payload)
            if alert.type == type_:
                return alert

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def alerts(library: Library, raw: Callable[[str], RawClient]) -> RawClient:
    """What the staff page sees: the site's alert topic."""
    from protocol import topics

    client = raw("staff-page")
    client.subscribe(topics.alert(library.config.site))
    return client


@pytest.fixture
def raw(mosquitto: MosquittoBroker) -> Iterator[Callable[[str], RawClient]]:
    clients: list[RawClient] = []

    def make(client_id: str) -> RawClient:
        client = RawClient(mosquitto.port, client_id)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
