"""A small library on a real SQLite file, its server on a real Mosquitto, and stations."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kiosk.link import MqttLink
from protocol.configfile import MqttConfig
from server import db
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

    def station(self, name: str = "kiosk-1") -> MqttLink:
        link = MqttLink(self.config.site, name, "kiosk",
                        MqttConfig(host="127.0.0.1", port=self.broker.port), request_timeout=5.0)
        assert link.start(wait=10), "the station could not connect to the broker"
        self.links.append(link)
        return link

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

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


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
