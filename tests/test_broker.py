"""The private brokers of thuvien.broker, and the production Mosquitto config and ACL."""

from __future__ import annotations

import getpass
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from thuvien.broker import (
    Broker,
    BrokerError,
    EmbeddedBroker,
    MosquittoBroker,
    embedded_available,
    free_port,
    mosquitto_available,
    mosquitto_binary,
    start_broker,
)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "config" / "mosquitto" / "thuvien.conf"
ACL = REPO / "config" / "mosquitto" / "thuvien.acl.example"
SITE = "thcs-nhut-tao"  # the site code written in the ACL example
WAIT_S = 5.0

# NFC and NFD forms, đ/Đ and tone marks: every byte must arrive unchanged.
VIETNAMESE = '{"title": "Dế Mèn phiêu lưu ký", "author": "Tô Hoài", "note": "Đường về nhà – Tiếng Việt"}'


def _need_mosquitto() -> None:
    # CI installs Mosquitto; a machine without it must say so rather than pass quietly.
    if not mosquitto_available():
        pytest.fail("Mosquitto is not installed: apt-get install mosquitto mosquitto-clients")


def make_broker(kind: str, **kwargs: Any) -> Broker:
    if kind == "mosquitto":
        _need_mosquitto()
        return MosquittoBroker(**kwargs)
    return EmbeddedBroker(**kwargs)


BROKER_KINDS = [
    "mosquitto",
    pytest.param(
        "embedded",
        marks=pytest.mark.skipif(not embedded_available(), reason="amqtt is not installed"),
    ),
]


@pytest.fixture(params=BROKER_KINDS)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    with make_broker(request.param) as running:
        yield running


# -- a small paho client for the tests ---------------------------------------------------


@dataclass
class Peer:
    """A connected paho client that records what it receives."""

    client: mqtt.Client
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)
    connack: queue.Queue[ReasonCode] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[ReasonCode]] = field(default_factory=queue.Queue)
    disconnected: threading.Event = field(default_factory=threading.Event)

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=WAIT_S)

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(WAIT_S)  # QoS 1: returns once the broker's PUBACK is in
        assert info.is_published()

    def next_message(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    # The client half of the Nagle fix (docs STACK.md).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect(
    broker: Broker | tuple[str, int],
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    *,
    expect_ok: bool = True,
) -> Peer:
    host, port = (broker.host, broker.port) if not isinstance(broker, tuple) else broker
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    peer = Peer(client)
    # The callbacks hold the queues, not the Peer: no reference cycle, so paho's
    # __del__ closes its wake-up socketpair (nothing else does) as soon as a Peer goes.
    messages, connack, subacks, disconnected = peer.messages, peer.connack, peer.subacks, peer.disconnected
    client.on_socket_open = _nodelay
    client.on_connect = lambda c, u, flags, rc, props: connack.put(rc)
    client.on_subscribe = lambda c, u, mid, rcs, props: subacks.put(list(rcs))
    client.on_message = lambda c, u, msg: messages.put(msg)
    client.on_disconnect = lambda c, u, flags, rc, props: disconnected.set()
    if username is not None:
        client.username_pw_set(username, password)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    rc = peer.connack.get(timeout=WAIT_S)
    if expect_ok:
        assert not rc.is_failure, f"{client_id} refused: {rc}"
    else:
        client.loop_stop()
        assert rc.is_failure, f"{client_id} should have been refused"
    return peer


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    opened: list[Peer] = []
    yield opened
    for peer in opened:
        peer.close()


# -- both brokers ------------------------------------------------------------------------


def test_qos1_round_trip_keeps_vietnamese_payload(broker: Broker, peers: list[Peer]) -> None:
    topic = f"thuvien/v1/{SITE}/station/kiosk-1/request"
    server = connect(broker, "server")
    kiosk = connect(broker, "kiosk-1")
    peers += [server, kiosk]
    assert kiosk.client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert server.subscribe(topic, qos=1)[0].value == 1  # granted QoS 1

    kiosk.publish(topic, VIETNAMESE.encode("utf-8"), qos=1)

    msg = server.next_message()
    assert msg.topic == topic
    assert msg.qos == 1
    assert msg.payload == VIETNAMESE.encode("utf-8")
    assert msg.payload.decode("utf-8") == VIETNAMESE


def test_retained_status_reaches_a_late_subscriber(broker: Broker, peers: list[Peer]) -> None:
    topic = f"thuvien/v1/{SITE}/server/status"
    status = '{"v":1,"state":"online","kind":"server","note":"Máy chủ thư viện"}'
    server = connect(broker, "server")
    peers.append(server)
    server.publish(topic, status, qos=1, retain=True)

    late = connect(broker, "kiosk-late")
    peers.append(late)
    late.subscribe(topic, qos=1)

    msg = late.next_message()
    assert msg.retain
    assert msg.payload.decode("utf-8") == status


@pytest.mark.parametrize("kind", BROKER_KINDS)
def test_stop_frees_the_port_and_drops_clients(kind: str) -> None:
    broker = make_broker(kind)
    broker.start()
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    peer = connect(broker, "kiosk-1")
    try:
        broker.stop()
        assert peer.disconnected.wait(WAIT_S), "the client was not disconnected"
    finally:
        peer.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((broker.host, broker.port), timeout=1).close()
    with socket.socket() as sock:
        # SO_REUSEADDR as every server sets it: the closed connections' TIME_WAIT entries
        # are not listeners and must not count as "still bound".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((broker.host, broker.port))
        sock.listen()
    broker.stop()  # a second stop is harmless


def test_start_broker_picks_by_preference() -> None:
    _need_mosquitto()
    with start_broker("auto") as auto:
        assert auto.kind == "mosquitto"
    port = free_port()
    with start_broker("mosquitto", port) as forced:
        assert (forced.kind, forced.port) == ("mosquitto", port)
    if embedded_available():
        with start_broker("embedded") as embedded:
            assert isinstance(embedded, EmbeddedBroker)
            assert embedded.running
    with pytest.raises(ValueError):
        start_broker("rabbitmq")


# -- Mosquitto only ----------------------------------------------------------------------


def test_mosquitto_config_has_nodelay_and_a_working_log() -> None:
    _need_mosquitto()
    with MosquittoBroker() as broker:
        config = broker.config_path.read_text()
        assert "set_tcp_nodelay true" in config
        assert f"listener {broker.port} 127.0.0.1" in config
        log = broker.log_path.read_text()
        assert "running" in log  # the log_type lines took effect
        workdir = broker.log_path.parent
    assert not workdir.exists()


def test_mosquitto_failure_reports_the_log_tail() -> None:
    _need_mosquitto()
    with pytest.raises(BrokerError, match="no_such_option"):
        MosquittoBroker(extra_config="no_such_option 1").start()


def test_mosquitto_refuses_a_port_that_is_taken() -> None:
    _need_mosquitto()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # The taken port accepts connections, so readiness must not be judged by that.
        with pytest.raises(BrokerError, match="(?i)address already in use"):
            MosquittoBroker(port).start()


def test_mosquitto_kill_and_restart_on_the_same_port(peers: list[Peer]) -> None:
    _need_mosquitto()
    topic = f"thuvien/v1/{SITE}/station/kiosk-1/status"
    with MosquittoBroker(persistent=True) as broker:
        first_pid = broker.pid
        connect(broker, "server").close()
        broker.kill()
        assert not broker.running
        broker.restart()
        assert broker.running and broker.pid != first_pid

        kiosk = connect(broker, "kiosk-1")
        peers.append(kiosk)
        kiosk.publish(topic, '{"v":1,"state":"online"}', retain=True)
        broker.restart()  # graceful: the persisted retained status comes back

        late = connect(broker, "server")
        peers.append(late)
        late.subscribe(topic)
        assert late.next_message().payload == b'{"v":1,"state":"online"}'


# -- the production config and ACL ------------------------------------------------------


def _rewrite(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count == 1, f"expected exactly one line matching {pattern!r} in {CONF.name}"
    return new


@dataclass
class ProductionBroker:
    host: str
    port: int
    process: subprocess.Popen[bytes]


@pytest.fixture
def production_broker(tmp_path: Path) -> Iterator[ProductionBroker]:
    """Mosquitto as Debian runs it: a main file that includes our drop-in from conf.d."""
    _need_mosquitto()
    port = free_port()
    passwd = tmp_path / "thuvien.passwd"
    acl = tmp_path / "thuvien.acl"
    shutil.copy(ACL, acl)
    mosquitto_passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    users = {"thuvien-server": "máy-chủ", "kiosk-1": "ki-ốt-1", "kiosk-2": "ki-ốt-2", "gate-1": "cổng"}
    for n, (user, password) in enumerate(users.items()):
        flags = ["-c", "-b"] if n == 0 else ["-b"]
        subprocess.run([mosquitto_passwd, *flags, str(passwd), user, password], check=True)

    drop_in = CONF.read_text(encoding="utf-8")
    drop_in = _rewrite(drop_in, r"^listener 1883 127\.0\.0\.1$", f"listener {port} 127.0.0.1")
    # Only the plain listener here: tests/e2e/test_broker_acl_e2e.py makes the
    # certificates (docs/security.md) and tests the TLS one.
    drop_in, tls_blocks = re.subn(r"^listener 8883$.*?^tls_version tlsv1\.2$\n", "", drop_in,
                                  flags=re.M | re.S)
    assert tls_blocks == 1, f"expected one TLS listener block in {CONF.name}"
    drop_in = _rewrite(drop_in, r"^password_file /etc/mosquitto/thuvien\.passwd$", f"password_file {passwd}")
    drop_in = _rewrite(drop_in, r"^acl_file /etc/mosquitto/thuvien\.acl$", f"acl_file {acl}")
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "thuvien.conf").write_text(drop_in, encoding="utf-8")

    log = tmp_path / "mosquitto.log"
    main = [
        # Debian's stock /etc/mosquitto/mosquitto.conf, with paths moved into tmp.
        "persistence true",
        f"persistence_location {tmp_path}/",
        f"log_dest file {log}",
        "log_type all",
        f"include_dir {conf_d}",
    ]
    if os.geteuid() == 0:
        main.insert(0, f"user {getpass.getuser()}")  # else it drops to 'mosquitto' and cannot read tmp
    (tmp_path / "mosquitto.conf").write_text("\n".join(main) + "\n", encoding="utf-8")

    binary = mosquitto_binary()
    assert binary is not None
    with open(tmp_path / "stderr.log", "wb") as stderr:
        process = subprocess.Popen(
            [str(binary), "-c", str(tmp_path / "mosquitto.conf")], cwd=tmp_path, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 10
        while "running" not in (log.read_text() if log.exists() else ""):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "production config did not start:\n"
                    + (tmp_path / "stderr.log").read_text()
                    + (log.read_text() if log.exists() else "")
                )
            time.sleep(0.02)
        # The one expected warning is the server-status pattern without %u (see the ACL).
        complaints = [
            line
            for line in log.read_text().splitlines()
            if ("Warning" in line or "Note" in line or "Error" in line)
            and not re.search(r"ACL pattern '[^']*/server/status' does not contain", line)
        ]
        assert not complaints, complaints
        yield ProductionBroker("127.0.0.1", port, process)
    finally:
        process.terminate()
        process.wait(10)


def _login(broker: ProductionBroker, user: str | None, password: str | None = None, **kw: Any) -> Peer:
    return connect((broker.host, broker.port), f"{user or 'anon'}-{time.monotonic_ns()}", user, password, **kw)


def test_production_config_refuses_anonymous_and_wrong_passwords(production_broker: ProductionBroker) -> None:
    _login(production_broker, None, expect_ok=False)
    _login(production_broker, "kiosk-1", "sai mật khẩu", expect_ok=False)
    _login(production_broker, "kiosk-1", "ki-ốt-1").close()


def test_acl_pins_a_station_to_its_own_topics(production_broker: ProductionBroker, peers: list[Peer]) -> None:
    base = f"thuvien/v1/{SITE}"
    server = _login(production_broker, "thuvien-server", "máy-chủ")
    kiosk = _login(production_broker, "kiosk-1", "ki-ốt-1")
    peers += [server, kiosk]
    assert not server.subscribe(f"{base}/station/+/request")[0].is_failure

    # Order makes the check deterministic: the broker forwards one client's messages in
    # order, so once the allowed one arrives, the forbidden one would already be here.
    kiosk.publish(f"{base}/station/kiosk-2/request", '{"forged": true}')  # acked, then dropped
    kiosk.publish(f"{base}/station/kiosk-1/request", '{"own": true}')
    assert server.next_message().topic == f"{base}/station/kiosk-1/request"
    assert server.messages.empty()

    # Replies: kiosk-1 reads its own, never kiosk-2's.
    kiosk.subscribe(f"{base}/station/kiosk-2/reply")
    assert not kiosk.subscribe(f"{base}/station/kiosk-1/reply")[0].is_failure
    server.publish(f"{base}/station/kiosk-2/reply", '{"for": "kiosk-2"}')
    server.publish(f"{base}/station/kiosk-1/reply", '{"for": "kiosk-1"}')
    assert kiosk.next_message().topic == f"{base}/station/kiosk-1/reply"
    assert kiosk.messages.empty()


def test_acl_gives_the_ledger_to_gates_only(production_broker: ProductionBroker, peers: list[Peer]) -> None:
    base = f"thuvien/v1/{SITE}"
    server = _login(production_broker, "thuvien-server", "máy-chủ")
    gate = _login(production_broker, "gate-1", "cổng")
    kiosk = _login(production_broker, "kiosk-1", "ki-ốt-1")
    peers += [server, gate, kiosk]
    for station in (gate, kiosk):
        station.subscribe(f"{base}/ledger")
        station.subscribe(f"{base}/server/status")

    server.publish(f"{base}/ledger", '{"item": "TK-004512"}')
    server.publish(f"{base}/server/status", '{"v":1,"state":"online"}')

    assert [gate.next_message().topic, gate.next_message().topic] == [f"{base}/ledger", f"{base}/server/status"]
    assert kiosk.next_message().topic == f"{base}/server/status"
    assert kiosk.messages.empty()
