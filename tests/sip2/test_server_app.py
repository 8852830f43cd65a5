"""`[sip2] enabled` in the server's config: the library server itself serves SIP2 next
to MQTT, and a checkout over SIP2 is published on the site's ledger topic like any other."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from circulation_sample import AN, TN, local
from conftest import INSTITUTION, Client

from protocol import sip2, topics
from server.app import RunningServer, start_server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def running(library, server_config, mosquitto, clock, _accounts: Path) -> Iterator[RunningServer]:  # type: ignore[no-untyped-def]
    config = server_config.model_copy(update={
        "site": INSTITUTION,
        "database": server_config.database.model_copy(update={"url": library.url}),
        "mqtt": server_config.mqtt.model_copy(update={"host": mosquitto.host, "port": mosquitto.port}),
        "sip2": server_config.sip2.model_copy(update={
            "enabled": True, "host": "127.0.0.1", "port": _free_port(),
            "accounts_file": str(_accounts)}),
    })
    server = start_server(config, clock=clock)
    try:
        yield server
    finally:
        server.stop()


def test_the_library_server_serves_sip2_and_publishes_its_ledger(running: RunningServer, mosquitto) -> None:  # type: ignore[no-untyped-def]
    ledger: list[dict] = []
    got = threading.Event()
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sip2-ledger-watch")
    watcher.on_connect = lambda c, *_: c.subscribe(topics.ledger(INSTITUTION), 1)

    def on_message(_c, _u, message) -> None:  # type: ignore[no-untyped-def]
        ledger.append(json.loads(message.payload))
        got.set()

    watcher.on_message = on_message
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.loop_start()
    try:
        assert running.sip2 is not None
        client = Client(running.sip2.port)
        try:
            assert client.login().ok == "1"
            when = sip2.format_date(local(2026, 10, 5).replace(tzinfo=None))
            answer = client.ask(sip2.CheckoutRequest(no_block=False, transaction_date=when,
                                                     AO=INSTITUTION, AA=AN, AB=TN[0], AC=""))
            assert answer.ok == "1", answer
            assert got.wait(10), "no ledger entry published for the SIP2 checkout"
            assert [(e["op"], e["item"], e["patron"]) for e in ledger] == [("checkout", TN[0], AN)]
        finally:
            client.close()
    finally:
        watcher.loop_stop()
        watcher.disconnect()
