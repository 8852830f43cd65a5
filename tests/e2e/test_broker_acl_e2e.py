"""Station identity on a real Mosquitto running the production config: logins and the
ACL made by `thuvien station add`, TLS certificates made by the commands in
docs/security.md, and the real server and kiosk link on top."""

from __future__ import annotations

import getpass
import os
import queue
import re
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import delete

from e2e_library import START, WallClock, fill, library_config
from kiosk.link import MqttLink
from protocol import CheckoutArgs, Op
from protocol.configfile import MqttConfig
from server import db
from server.app import start_server
from server.models import Station
from thuvien import stations as admin
from thuvien.broker import free_port, mosquitto_binary
from thuvien.cli import main

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "config" / "mosquitto" / "thuvien.conf"
SECURITY_MD = REPO / "docs" / "security.md"
SITE = "thcs-acl"
BASE = f"thuvien/v1/{SITE}"
WAIT_S = 5.0
# After a legitimate message arrives, a forbidden one sent before it would be there too
# (the broker keeps one client's order); this is only a margin for a second sender.
QUIET_S = 0.3


def _rewrite(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    assert count == 1, f"expected one line matching {pattern!r} in {CONF.name}"
    return new


def make_certificates(folder: Path) -> Path:
    """Run docs/security.md's certificate commands as written, in `folder`, for the
    address the test broker has (127.0.0.1); `chown` needs a mosquitto group and root."""
    text = SECURITY_MD.read_text(encoding="utf-8")
    block = re.search(r"<!-- tls-commands.*?-->\n```sh\n(.*?)```", text, re.S)
    assert block, "docs/security.md lost its tls-commands block"
    script = block.group(1).replace("/etc/mosquitto/certs", str(folder))
    script = script.replace("IP:192.168.1.10", "IP:127.0.0.1")
    script = "\n".join(line for line in script.splitlines() if not line.startswith("chown "))
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return folder


@dataclass
class Broker:
    plain: int
    tls: int
    process: subprocess.Popen[bytes]
    log: Path
    certs: Path
    passwd: Path
    acl: Path
    server_toml: Path
    url: str

    def credential(self, station: str) -> Path:
        return self.server_toml.parent / "credentials" / f"{station}-mqtt"

    def password(self, station: str) -> str:
        return self.credential(station).read_text(encoding="utf-8").strip()

    def reload(self) -> None:
        """What `systemctl reload mosquitto` does: SIGHUP, the password file and ACL read again."""
        offset = self.log.stat().st_size
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT_S
        while b"Reloading config" not in self.log.read_bytes()[offset:]:
            assert time.monotonic() < deadline, "mosquitto did not reload"
            time.sleep(0.02)
        time.sleep(0.1)  # the log line comes first, then the files are read


def _add(broker_dir: Path, toml: Path, name: str, kind: str) -> None:
    assert main(["station", "add", SITE, name, "--kind", kind, "--config", str(toml),
                 "--passwd-file", str(broker_dir / "thuvien.passwd"),
                 "--acl-file", str(broker_dir / "thuvien.acl"),
                 "--password-out", str(toml.parent / "credentials" / f"{name}-mqtt")]) == 0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail("Mosquitto is not installed: apt-get install mosquitto")
    url = f"sqlite:///{tmp_path / 'thuvien.db'}"
    db.upgrade(url)
    fill(url)
    engine = db.make_engine(url)
    with engine.begin() as connection:
        # fill() registers the suite's usual stations; here `thuvien station add` must.
        connection.execute(delete(Station))
    engine.dispose()
    toml = tmp_path / "server.toml"
    toml.write_text(f'site = "{SITE}"\nschool_name = "Trường THCS Thử nghiệm"\n'
                    f'[database]\nurl = "{url}"\n[mqtt]\nusername = "thuvien-server"\n',
                    encoding="utf-8")
    etc = tmp_path / "etc-mosquitto"
    etc.mkdir()
    # As docs/security.md sets it up: the server's login, the ACL, then the stations.
    admin.write_secret(tmp_path / "credentials" / "thuvien-server-mqtt", admin.generate_password())
    admin.set_broker_password(etc / "thuvien.passwd", "thuvien-server",
                              (tmp_path / "credentials" / "thuvien-server-mqtt").read_text().strip())
    assert main(["station", "acl", "--config", str(toml), "--out", str(etc / "thuvien.acl"),
                 "--monitor", "giam-sat"]) == 0
    admin.set_broker_password(etc / "thuvien.passwd", "giam-sat", "xem-thôi")
    for name, kind in [("kiosk-1", "kiosk"), ("kiosk-2", "kiosk"), ("gate-1", "gate")]:
        _add(etc, toml, name, kind)
    certs = make_certificates(etc / "certs")

    plain, tls = free_port(), free_port()
    drop_in = CONF.read_text(encoding="utf-8")
    drop_in = _rewrite(drop_in, r"^listener 1883 127\.0\.0\.1$", f"listener {plain} 127.0.0.1")
    drop_in = _rewrite(drop_in, r"^listener 8883$", f"listener {tls} 127.0.0.1")
    for key, name in (("certfile", "thuvien-server.crt"), ("keyfile", "thuvien-server.key")):
        drop_in = _rewrite(drop_in, rf"^{key} /etc/mosquitto/certs/{re.escape(name)}$",
                           f"{key} {certs / name}")
    for key, name in (("password_file", "thuvien.passwd"), ("acl_file", "thuvien.acl")):
        drop_in = _rewrite(drop_in, rf"^{key} /etc/mosquitto/{re.escape(name)}$", f"{key} {etc / name}")
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "thuvien.conf").write_text(drop_in, encoding="utf-8")
    log = tmp_path / "mosquitto.log"
    main_conf = ["persistence_location " + f"{tmp_path}/", f"log_dest file {log}", "log_type all",
                 f"include_dir {conf_d}"]
    if os.geteuid() == 0:
        main_conf.insert(0, f"user {getpass.getuser()}")  # else it drops to 'mosquitto'
    (tmp_path / "mosquitto.conf").write_text("\n".join(main_conf) + "\n", encoding="utf-8")
    with open(tmp_path / "stderr.log", "wb") as stderr:
        process = subprocess.Popen([str(binary), "-c", str(tmp_path / "mosquitto.conf")],
                                   cwd=tmp_path, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while " running" not in (log.read_text() if log.exists() else ""):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the production config did not start:\n"
                            + (tmp_path / "stderr.log").read_text()
                            + (log.read_text() if log.exists() else ""))
            time.sleep(0.02)
        complaints = [line for line in log.read_text().splitlines()
                      if re.search(r"Warning|Error", line)
                      and not re.search(r"ACL pattern '[^']*/server/status' does not contain", line)]
        assert not complaints, complaints
        yield Broker(plain, tls, process, log, certs, etc / "thuvien.passwd", etc / "thuvien.acl",
                     toml, url)
    finally:
        process.terminate()
        process.wait(10)


# --- a small client -----------------------------------------------------------------------------


class Client:
    """A paho client (MQTT 3.1.1 or 5) that records what it receives and every ack."""

    def __init__(self, port: int, user: str | None, password: str | None, *,
                 v5: bool = False, tls: Path | None = None) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[Any] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        self.pubacks: dict[int, Any] = {}
        self._acked = threading.Condition()
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.monotonic_ns()}",
                                  protocol=protocol)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls))
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(list(rcs))
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.reason = self.connack.get(timeout=WAIT_S)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self._acked:
            self.pubacks[mid] = reason
            self._acked.notify_all()

    @property
    def refused(self) -> bool:
        return bool(self.reason.is_failure)

    def subscribe(self, topic: str) -> list[Any]:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=WAIT_S)

    def publish(self, topic: str, payload: str) -> Any:
        """QoS 1; returns the PUBACK's reason code (always success under 3.1.1)."""
        info = self.client.publish(topic, payload, qos=1)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self.pubacks, WAIT_S), "no PUBACK"
            return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


def _login(broker: Broker, clients: list[Client], user: str | None, password: str | None = None,
           **kw: Any) -> Client:
    client = Client(broker.plain, user, password, **kw)
    clients.append(client)
    return client


def _server(broker: Broker, clients: list[Client]) -> Client:
    password = broker.password("thuvien-server")
    server = _login(broker, clients, "thuvien-server", password)
    assert not server.refused
    return server


# --- logins -----------------------------------------------------------------------------------


def test_wrong_passwords_and_anonymous_clients_are_refused(broker: Broker, clients: list[Client]) -> None:
    assert _login(broker, clients, None).refused
    assert _login(broker, clients, "kiosk-1", "sai-mật-khẩu").refused
    assert _login(broker, clients, "kiosk-1", broker.password("kiosk-2")).refused  # another's
    assert _login(broker, clients, "kiosk-1", "sai", v5=True).refused
    assert _login(broker, clients, "kiosk-9", broker.password("kiosk-1")).refused  # not added
    assert not _login(broker, clients, "kiosk-1", broker.password("kiosk-1")).refused


def test_tls_listener_needs_the_school_ca_and_a_password(broker: Broker, clients: list[Client]) -> None:
    ca = broker.certs / "thuvien-ca.crt"
    station = Client(broker.tls, "kiosk-1", broker.password("kiosk-1"), tls=ca)
    clients.append(station)
    assert not station.refused
    assert station.client.socket().version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]
    anonymous = Client(broker.tls, None, None, tls=ca)
    clients.append(anonymous)
    assert anonymous.refused
    # A certificate from anyone else's CA (here the system's trust store) is refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(broker.tls, "kiosk-1", broker.password("kiosk-1"), tls=Path(ssl.get_default_verify_paths().cafile
                                                                             or "/etc/ssl/certs/ca-certificates.crt"))
    # Plain MQTT on the TLS port gets nowhere.
    with pytest.raises(Exception):
        Client(broker.tls, "kiosk-1", broker.password("kiosk-1"))


# --- the ACL --------------------------------------------------------------------------------


def test_a_forged_request_under_mqtt311_is_acknowledged_but_never_reaches_the_server(
        broker: Broker, clients: list[Client]) -> None:
    server = _server(broker, clients)
    assert not server.subscribe(f"{BASE}/station/+/request")[0].is_failure
    kiosk = _login(broker, clients, "kiosk-1", broker.password("kiosk-1"))
    assert not kiosk.publish(f"{BASE}/station/kiosk-2/request", '{"forged": true}').is_failure
    assert not kiosk.publish(f"{BASE}/station/kiosk-1/request", '{"own": true}').is_failure
    message = server.messages.get(timeout=WAIT_S)
    assert (message.topic, message.payload) == (f"{BASE}/station/kiosk-1/request", b'{"own": true}')
    time.sleep(QUIET_S)
    assert server.messages.empty()


def test_mqtt5_says_not_authorized_to_a_station_writing_in_another_ones_name(
        broker: Broker, clients: list[Client]) -> None:
    server = _server(broker, clients)
    server.subscribe(f"{BASE}/#")
    gate = _login(broker, clients, "gate-1", broker.password("gate-1"), v5=True)
    forged = gate.publish(f"{BASE}/station/kiosk-1/request", "{}")
    assert forged.is_failure and forged.value == 135 and str(forged) == "Not authorized"
    # Nor may a station speak as the server.
    assert gate.publish(f"{BASE}/ledger", "{}").value == 135
    assert gate.publish(f"{BASE}/station/gate-1/command", "{}").value == 135
    own = gate.publish(f"{BASE}/station/gate-1/event", '{"own": true}')
    assert not own.is_failure
    assert server.messages.get(timeout=WAIT_S).topic == f"{BASE}/station/gate-1/event"
    time.sleep(QUIET_S)
    assert server.messages.empty()


def test_a_station_cannot_read_another_stations_replies(broker: Broker, clients: list[Client]) -> None:
    server = _server(broker, clients)
    kiosk = _login(broker, clients, "kiosk-1", broker.password("kiosk-1"))
    # Mosquitto 2.0 grants these subscriptions and checks each message at delivery.
    kiosk.subscribe(f"{BASE}/station/kiosk-2/reply")
    kiosk.subscribe(f"{BASE}/station/+/reply")
    assert not kiosk.subscribe(f"{BASE}/station/kiosk-1/command")[0].is_failure
    server.publish(f"{BASE}/station/kiosk-2/reply", '{"for": "kiosk-2"}')
    server.publish(f"{BASE}/station/kiosk-1/reply", '{"for": "kiosk-1"}')
    assert kiosk.messages.get(timeout=WAIT_S).payload == b'{"for": "kiosk-1"}'
    time.sleep(QUIET_S)
    assert kiosk.messages.empty()


def test_only_gates_read_the_ledger_and_monitors_only_read(broker: Broker, clients: list[Client]) -> None:
    server = _server(broker, clients)
    gate = _login(broker, clients, "gate-1", broker.password("gate-1"))
    kiosk = _login(broker, clients, "kiosk-1", broker.password("kiosk-1"))
    monitor = _login(broker, clients, "giam-sat", "xem-thôi", v5=True)
    for station in (gate, kiosk):
        station.subscribe(f"{BASE}/ledger")
    monitor.subscribe(f"{BASE}/#")
    server.publish(f"{BASE}/ledger", '{"item": "TN00001"}')
    assert gate.messages.get(timeout=WAIT_S).topic == f"{BASE}/ledger"
    assert monitor.messages.get(timeout=WAIT_S).topic == f"{BASE}/ledger"
    for topic in (f"{BASE}/station/kiosk-1/command", f"{BASE}/station/kiosk-1/request",
                  f"{BASE}/ledger", f"{BASE}/alert", f"{BASE}/server/status"):
        assert monitor.publish(topic, "{}").value == 135, topic
    # The %u patterns hold for every login: under its own name a monitor may write, and
    # the server refuses it as an unregistered station (docs/security.md).
    assert not monitor.publish(f"{BASE}/station/giam-sat/request", "{}").is_failure
    time.sleep(QUIET_S)
    assert kiosk.messages.empty()


def test_rotating_and_removing_a_station_take_effect_at_the_reload(
        broker: Broker, clients: list[Client]) -> None:
    old = broker.password("kiosk-2")
    _add(broker.passwd.parent, broker.server_toml, "kiosk-2", "kiosk")
    new = broker.password("kiosk-2")
    assert new != old
    broker.reload()
    assert _login(broker, clients, "kiosk-2", old).refused
    assert not _login(broker, clients, "kiosk-2", new).refused

    assert main(["station", "remove", SITE, "kiosk-2", "--config", str(broker.server_toml),
                 "--passwd-file", str(broker.passwd), "--acl-file", str(broker.acl)]) == 0
    broker.reload()
    assert _login(broker, clients, "kiosk-2", new).refused
    # A gate added later reads the ledger once the ACL is made again and reloaded.
    _add(broker.passwd.parent, broker.server_toml, "gate-2", "gate")
    broker.reload()
    server = _server(broker, clients)
    gate = _login(broker, clients, "gate-2", broker.password("gate-2"))
    assert not gate.subscribe(f"{BASE}/ledger")[0].is_failure
    server.publish(f"{BASE}/ledger", "{}")
    assert gate.messages.get(timeout=WAIT_S).topic == f"{BASE}/ledger"


def test_a_station_added_by_the_cli_borrows_over_tls_from_the_real_server(broker: Broker) -> None:
    """The whole chain: the server on the loopback listener with its credential, the
    kiosk link over TLS with the 0600 file that `station add` wrote."""
    credential = broker.credential("kiosk-1")
    assert credential.stat().st_mode & 0o777 == 0o600
    config = library_config(SITE, broker.url, broker.plain)
    config = config.model_copy(update={"mqtt": MqttConfig(
        host="127.0.0.1", port=broker.plain, username="thuvien-server",
        password_file=str(broker.credential("thuvien-server")))})
    server = start_server(config, clock=WallClock(START))
    # As a station's [mqtt] table says it (docs/security.md).
    link = MqttLink(SITE, "kiosk-1", "kiosk",
                    MqttConfig(host="127.0.0.1", port=broker.tls, password_file=str(credential),
                               tls=True, ca_file=str(broker.certs / "thuvien-ca.crt")))
    try:
        assert server.service.connected.wait(10), "the server could not log in"
        assert link.start(wait=10), "the kiosk could not log in over TLS"
        reply = link.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2025-0001", item="TN00001"))
        assert reply.ok, reply
    finally:
        link.stop()
        server.stop()
