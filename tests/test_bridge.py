"""`thuvien bridge config|acl` on real Mosquittos: a school's broker bridged to an upper
broker by the generated file, the upper broker's ACL and password file (mosquitto_passwd),
a commune office chaining its schools to the province, TLS with a throwaway CA, and a
real school server publishing upward through it all while the upper broker goes away."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import insert

from protocol.configfile import ConfigError, MqttConfig
from protocol.upward import UpwardLedgerBatch
from server import db
from server.app import start_server
from server.bridge import BridgeError, render_upper_acl
from server.config import DatabaseConfig, ServerConfig, UpwardConfig
from server.models import Copy, LedgerEntry, Reader, Title
from thuvien import bridge_cli
from thuvien.broker import MosquittoBroker, free_port, mosquitto_binary
from thuvien.stations import set_broker_password

AGGREGATE = "thuvien-aggregate"
SPY = "spy"
READER_NAME = "Nguyễn Thị Thu Trang"
READER_CODE = "HS-2026-0042"


def bridge(*argv: str) -> int:
    """`thuvien bridge ...` through the subcommand's own parser (thuvien.cli adds it)."""
    parser = argparse.ArgumentParser(prog="thuvien")
    bridge_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bridge", *argv])
    return int(args.func(args))


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


class Listener:
    """A client of a broker that records every message (topic, payload, retained)."""

    def __init__(self, port: int, topics: list[str], *, user: str | None = None,
                 password: str | None = None, client_id: str = "listener",
                 clean: bool = True, tls_ca: Path | None = None) -> None:
        self.topics = topics
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.on_connect = lambda client, *_: client.subscribe([(t, 1) for t in self.topics])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "could not subscribe"

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def topics_seen(self) -> set[str]:
        with self.lock:
            return {t for t, _, _ in self.messages}

    def seqs(self, site: str) -> set[int]:
        return {entry.seq for payload in self.on(f"thuvien/v1/{site}/upward/ledger")
                for entry in UpwardLedgerBatch.model_validate_json(payload).entries}

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publisher(port: int) -> Listener:
    """A local client of a school's broker (anonymous there, as the test broker allows)."""
    return Listener(port, ["nothing/here"], client_id=f"local-{port}")


def upper_broker(folder: Path, sites: str, passwords: dict[str, str], *,
                 commune: str | None = None, extra: str = "") -> MosquittoBroker:
    """An upper broker that admits only the logins of `passwords`, with the ACL that
    `thuvien bridge acl` prints; it logs denied publishes (debug)."""
    folder.mkdir(parents=True, exist_ok=True)
    passwd = folder / "upper.passwd"
    for user, password in passwords.items():
        set_broker_password(passwd, user, password)
    argv = ["acl", "--sites", sites, "--out", str(folder / "upper.acl")]
    if commune:
        argv += ["--commune", commune]
    assert bridge(*argv) == 0
    # The test's own eyes upstairs: a login that reads everything, to see what leaks.
    set_broker_password(passwd, SPY, SPY)
    with open(folder / "upper.acl", "a", encoding="utf-8") as acl:
        acl.write(f"\nuser {SPY}\ntopic read #\n")
    return MosquittoBroker(persistent=True, extra_config=(
        f"allow_anonymous false\npassword_file {passwd}\nacl_file {folder / 'upper.acl'}\n"
        f"log_type debug\n{extra}"))


def denied(broker: MosquittoBroker, client_id: str, topic: str) -> Callable[[], bool]:
    """Whether `broker` has logged refusing `client_id` a publish on `topic` (debug log)."""
    pattern = re.compile(rf"Denied PUBLISH from {re.escape(client_id)} \(.*'{re.escape(topic)}'")
    return lambda: bool(pattern.search(broker.log_path.read_text()))


def school_broker(folder: Path, site: str, upper_port: int, *, user: str | None = None,
                  password: str | None = None, extra_args: tuple[str, ...] = (),
                  chain: str | None = None) -> MosquittoBroker:
    """A school's (or, with `chain`, a commune's) broker with the bridge file that
    `thuvien bridge config` writes in its conf.d."""
    folder.mkdir(parents=True, exist_ok=True)
    conf_d = folder / "conf.d"
    argv = ["config", "--upper-host", "127.0.0.1", "--upper-port", str(upper_port),
            "--restart-timeout", "1,2", "--out", str(conf_d / "thuvien-bridge.conf"), *extra_args]
    if chain:
        argv += ["--chain", chain]
    else:
        toml = folder / "server.toml"
        toml.write_text(f'site = "{site}"\nschool_name = "Trường {site}"\n', encoding="utf-8")
        argv += ["--config", str(toml)]
    if user:
        argv += ["--username", user]
    if password:
        (folder / "bridge-password").write_text(password + "\n", encoding="utf-8")
        argv += ["--password-file", str(folder / "bridge-password")]
    assert bridge(*argv) == 0
    return MosquittoBroker(persistent=True, extra_config=f"include_dir {conf_d}\n")


def bridge_up(upper_listener: Listener, name: str) -> Callable[[], bool]:
    return lambda: upper_listener.on(f"thuvien/v1/{name}/bridge/state")[-1:] == [b"1"]


@pytest.fixture
def brokers() -> Iterator[list[MosquittoBroker]]:
    started: list[MosquittoBroker] = []
    yield started
    for broker in reversed(started):
        broker.stop()


def _started(brokers: list[MosquittoBroker], broker: MosquittoBroker) -> MosquittoBroker:
    broker.start()
    brokers.append(broker)
    return broker


# --- the bridge on real brokers ---------------------------------------------------------------


def test_a_school_reports_under_its_own_site_and_nothing_else_crosses(
        tmp_path: Path, brokers: list[MosquittoBroker]) -> None:
    secrets = {"bridge-thcs-a": "mat-khau-a", "bridge-thcs-b": "mat-khau-b", AGGREGATE: "tong-hop"}
    upper = _started(brokers, upper_broker(tmp_path / "upper", "thcs-a,thcs-b", secrets))
    school = _started(brokers, school_broker(tmp_path / "a", "thcs-a", upper.port,
                                             password=secrets["bridge-thcs-a"]))
    # A broker whose bridge claims school B's prefix with school A's login.
    rogue = _started(brokers, school_broker(tmp_path / "rogue", "thcs-b", upper.port,
                                            user="bridge-thcs-a", password=secrets["bridge-thcs-a"]))
    province = Listener(upper.port, ["#"], user=SPY, password=SPY, client_id="spy")
    local, rogue_local = publisher(school.port), publisher(rogue.port)
    try:
        wait_until(bridge_up(province, "thcs-a"), what="school A's bridge")
        wait_until(lambda: "as thuvien-bridge-thcs-b" in upper.log_path.read_text(),
                   what="the rogue bridge to log in")
        # Not upward, or not this school's: none of it may leave school A.
        local.publish("thuvien/v1/thcs-a/ledger", f'{{"patron": "{READER_CODE}"}}'.encode())
        local.publish("thuvien/v1/thcs-a/station/kiosk-1/request", b"{}")
        local.publish("thuvien/v1/thcs-b/upward/ledger", b"forged by A's school")
        rogue_local.publish("thuvien/v1/thcs-b/upward/ledger", b"forged through the bridge")
        wait_until(denied(upper, "thuvien-bridge-thcs-b", "thuvien/v1/thcs-b/upward/ledger"),
                   what="the upper broker to refuse the rogue bridge")
        # School A's own topics do cross, retained ones as retained.
        local.publish("thuvien/v1/thcs-a/upward/report/statistics/2026", b"snapshot", retain=True)
        local.publish("thuvien/v1/thcs-a/upward/ledger", b"batch")
        wait_until(lambda: province.on("thuvien/v1/thcs-a/upward/ledger"), what="school A's batch")
        assert province.on("thuvien/v1/thcs-a/upward/report/statistics/2026") == [b"snapshot"]
        late = Listener(upper.port, ["thuvien/v1/+/upward/#"], user=AGGREGATE,
                        password=secrets[AGGREGATE], client_id="late")
        try:
            wait_until(lambda: late.on("thuvien/v1/thcs-a/upward/report/statistics/2026"),
                       what="the retained snapshot upstairs")
        finally:
            late.close()
        # A's login cannot speak for B directly either.
        direct = Listener(upper.port, ["thuvien/v1/thcs-a/upward/none"], user="bridge-thcs-a",
                          password=secrets["bridge-thcs-a"], client_id="direct-a")
        try:
            direct.publish("thuvien/v1/thcs-b/upward/ledger", b"forged directly")
        finally:
            direct.close()
        wait_until(denied(upper, "direct-a", "thuvien/v1/thcs-b/upward/ledger"),
                   what="the upper broker to refuse A's login on B's prefix")
        time.sleep(0.3)  # a margin for the spy's delivery, had any been allowed
        seen = province.topics_seen()
        assert not any(topic.startswith("thuvien/v1/thcs-b/") and "/upward/" in topic for topic in seen), seen
        assert "thuvien/v1/thcs-a/ledger" not in seen
        # School A's bridge never even tried: its topic pattern is pinned at the school,
        # not only refused upstairs (the forged publishes went before its batch).
        assert "Denied PUBLISH from thuvien-bridge-thcs-a " not in upper.log_path.read_text()
        assert not any("/station/" in topic for topic in seen)
    finally:
        for client in (province, local, rogue_local):
            client.close()


def test_a_commune_office_chains_its_schools_to_the_province(
        tmp_path: Path, brokers: list[MosquittoBroker]) -> None:
    province_secrets = {"bridge-phuong-1": "mk-phuong", AGGREGATE: "tong-hop"}
    province = _started(brokers, upper_broker(tmp_path / "province", "", province_secrets,
                                              commune="phuong-1=thcs-a"))
    commune = _started(brokers, upper_broker(tmp_path / "commune", "thcs-a,thcs-z",
                                             {"bridge-thcs-a": "mk-a", "bridge-thcs-z": "mk-z"},
                                             extra=_chain_include(tmp_path / "chain", province.port)))
    school_a = _started(brokers, school_broker(tmp_path / "a", "thcs-a", commune.port, password="mk-a"))
    school_z = _started(brokers, school_broker(tmp_path / "z", "thcs-z", commune.port, password="mk-z"))
    listener = Listener(province.port, ["#"], user=SPY, password=SPY, client_id="province")
    local_a, local_z = publisher(school_a.port), publisher(school_z.port)
    try:
        wait_until(bridge_up(listener, "phuong-1"), what="the commune's bridge")
        wait_until(bridge_up(listener, "thcs-a"), what="school A's state, forwarded")
        # thcs-z reports to the commune, but the province has not listed it for phuong-1.
        local_z.publish("thuvien/v1/thcs-z/upward/ledger", b"not for the province")
        wait_until(denied(province, "thuvien-bridge-phuong-1", "thuvien/v1/thcs-z/upward/ledger"),
                   what="the province to refuse a school not listed for the commune")
        local_a.publish("thuvien/v1/thcs-a/upward/ledger", b"from school A")
        wait_until(lambda: listener.on("thuvien/v1/thcs-a/upward/ledger"), what="A at the province")
        assert listener.on("thuvien/v1/thcs-a/upward/ledger") == [b"from school A"]
        assert not listener.on("thuvien/v1/thcs-z/upward/ledger")
    finally:
        for client in (listener, local_a, local_z):
            client.close()


def _chain_include(folder: Path, province_port: int) -> str:
    conf = folder / "conf.d" / "thuvien-bridge.conf"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pw").write_text("mk-phuong", encoding="utf-8")
    assert bridge("config", "--chain", "phuong-1", "--upper-host", "127.0.0.1", "--upper-port",
                  str(province_port), "--password-file", str(folder / "pw"),
                  "--restart-timeout", "1,2", "--out", str(conf)) == 0
    return f"include_dir {conf.parent}\n"


def _ledger_rows(url: str, first: int, count: int) -> None:
    """`count` ledger entries straight into the school's database, from running number `first`."""
    engine = db.make_engine(url)
    try:
        with engine.begin() as connection:
            at = dt.datetime(2026, 10, 5, 2, 0, tzinfo=dt.timezone.utc)
            if first == 1:
                connection.execute(insert(Reader), [{
                    "code": READER_CODE, "moet_id": "7912345678", "name": READER_NAME,
                    "kind": "student", "class_name": "9A3", "grade": 9, "status": "active",
                    "created_at": at}])
                connection.execute(insert(Title), [{"title": "Truyện Kiều", "language": "vie"}])
                connection.execute(insert(Copy), [{"title_id": 1, "accession_number": "TN.00001",
                                                   "kind": "TN", "status": "available"}])
            connection.execute(insert(LedgerEntry), [{
                "request_id": f"r-{n}", "op": "checkout" if n % 2 else "return", "copy_id": 1,
                "reader_id": 1, "station": "kiosk-1", "station_at": at + dt.timedelta(minutes=n),
                "server_at": at + dt.timedelta(minutes=n), "offline": False}
                for n in range(first, first + count)])
    finally:
        engine.dispose()


def test_a_school_server_reports_through_the_bridge_while_the_upper_broker_comes_and_goes(
        tmp_path: Path, brokers: list[MosquittoBroker]) -> None:
    secrets = {"bridge-thcs-a": "mat-khau-a", AGGREGATE: "tong-hop"}
    upper = _started(brokers, upper_broker(tmp_path / "upper", "thcs-a", secrets))
    school = _started(brokers, school_broker(tmp_path / "a", "thcs-a", upper.port,
                                             password=secrets["bridge-thcs-a"]))
    url = f"sqlite:///{tmp_path / 'thuvien.db'}"
    db.upgrade(url)
    _ledger_rows(url, 1, 20)
    config = ServerConfig(site="thcs-a", school_name="Trường THCS A",
                          database=DatabaseConfig(url=url),
                          mqtt=MqttConfig(host="127.0.0.1", port=school.port),
                          upward=UpwardConfig(enabled=True, interval_s=0.2, batch_size=7))
    aggregate = Listener(upper.port, ["thuvien/v1/+/upward/#"], user=AGGREGATE,
                         password=secrets[AGGREGATE], client_id="aggregate", clean=False)
    server = start_server(config)
    try:
        wait_until(lambda: aggregate.seqs("thcs-a") == set(range(1, 21)), what="the first entries")

        upper.kill()  # the province's broker is gone; the school keeps lending
        _ledger_rows(url, 21, 30)
        assert server.upward is not None
        wait_until(lambda: server.upward.cursor == 50, what="the school broker to take them all")
        upper.restart()
        wait_until(lambda: aggregate.seqs("thcs-a") == set(range(1, 51)), timeout=40,
                   what="the entries queued at the school while the link was down")
        with aggregate.lock:
            everything = b"".join(payload for _, payload, _ in aggregate.messages).decode()
        assert READER_NAME not in everything and READER_CODE not in everything
        assert '"reader_class":"9A3"' in everything
        assert aggregate.on("thuvien/v1/thcs-a/upward/school")
        assert aggregate.on("thuvien/v1/thcs-a/upward/report/tt16/2026")
    finally:
        server.stop()
        aggregate.close()


def _throwaway_ca(folder: Path) -> Path:
    """A CA and a certificate for 127.0.0.1 signed by it (openssl)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = """
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 2 \
    -subj "/CN=throwaway upper CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout ca.key -out ca.crt
printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=serverAuth\\nsubjectAltName=IP:127.0.0.1\\n' > upper.ext
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -subj "/CN=127.0.0.1" -keyout upper.key -out upper.csr
openssl x509 -req -sha256 -days 2 -in upper.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -extfile upper.ext -out upper.crt
"""
    assert shutil.which("openssl"), "openssl is needed (apt-get install openssl)"
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return folder


def test_the_bridge_speaks_tls_to_an_upper_broker_it_trusts(
        tmp_path: Path, brokers: list[MosquittoBroker]) -> None:
    certs = _throwaway_ca(tmp_path / "certs")
    tls_port = free_port()
    secrets = {"bridge-thcs-a": "mat-khau-a", AGGREGATE: "tong-hop"}
    upper = _started(brokers, upper_broker(tmp_path / "upper", "thcs-a", secrets, extra=(
        f"listener {tls_port} 127.0.0.1\ncertfile {certs / 'upper.crt'}\n"
        f"keyfile {certs / 'upper.key'}\ntls_version tlsv1.2\n")))
    school = _started(brokers, school_broker(
        tmp_path / "a", "thcs-a", tls_port, password=secrets["bridge-thcs-a"],
        extra_args=("--cafile", str(certs / "ca.crt"))))
    conf = (tmp_path / "a" / "conf.d" / "thuvien-bridge.conf").read_text()
    assert f"bridge_cafile {certs / 'ca.crt'}" in conf and "bridge_insecure false" in conf
    listener = Listener(tls_port, ["thuvien/v1/+/upward/#"], user=AGGREGATE,
                        password=secrets[AGGREGATE], client_id="tls", tls_ca=certs / "ca.crt")
    local = publisher(school.port)
    try:
        wait_until(lambda: "as thuvien-bridge-thcs-a" in upper.log_path.read_text(),
                   what="the bridge over TLS")
        local.publish("thuvien/v1/thcs-a/upward/ledger", b"over tls")
        wait_until(lambda: listener.on("thuvien/v1/thcs-a/upward/ledger") == [b"over tls"],
                   what="the batch over TLS")
    finally:
        listener.close()
        local.close()

    # A CA that did not sign the upper broker's certificate: the bridge never gets in.
    other = _throwaway_ca(tmp_path / "other")
    wrong = _started(brokers, school_broker(
        tmp_path / "wrong", "thcs-a", tls_port, password=secrets["bridge-thcs-a"],
        extra_args=("--cafile", str(other / "ca.crt"))))
    wait_until(lambda: "certificate verify failed" in wrong.log_path.read_text(),
               what="the untrusted certificate to be refused")


# --- the files ------------------------------------------------------------------------------------


def test_the_password_goes_only_into_the_generated_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "server.toml"
    toml.write_text('site = "thcs-nhut-tao"\nschool_name = "Trường THCS Nhựt Tảo"\n', encoding="utf-8")
    out = tmp_path / "conf.d" / "thuvien-bridge.conf"
    monkeypatch.setenv("THUVIEN_BRIDGE_PASSWORD", "tu-bien-moi-truong")
    assert bridge("config", "--config", str(toml), "--upper-host", "mqtt.sgd.example.vn",
                  "--out", str(out)) == 0
    printed = capsys.readouterr()
    assert "tu-bien-moi-truong" not in printed.out + printed.err
    assert "no TLS" in printed.err
    text = out.read_text(encoding="utf-8")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "remote_username bridge-thcs-nhut-tao\nremote_password tu-bien-moi-truong\n" in text
    assert "address mqtt.sgd.example.vn:8883\n" in text
    assert "topic upward/# out 1 thuvien/v1/thcs-nhut-tao/ thuvien/v1/thcs-nhut-tao/\n" in text
    for line in ("cleansession false", "remote_clientid thuvien-bridge-thcs-nhut-tao",
                 "queue_qos0_messages false", "try_private true", "notifications true",
                 "notification_topic thuvien/v1/thcs-nhut-tao/bridge/state", "restart_timeout 10 300"):
        assert f"\n{line}\n" in text, line
    if os.geteuid() == 0 and _has_user("mosquitto"):
        assert out.stat().st_uid == _uid("mosquitto")  # the broker re-reads conf.d on reload

    # A password that Mosquitto would cut at a space is refused, the file left as it was.
    (tmp_path / "bad").write_text("hai tu\n", encoding="utf-8")
    assert bridge("config", "--config", str(toml), "--upper-host", "h", "--password-file",
                  str(tmp_path / "bad"), "--out", str(out)) == 1
    assert "không có dấu cách" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == text
    # Neither a school nor a commune; a broken server config names its line.
    assert bridge("config", "--upper-host", "h", "--out", "-") == 2
    assert bridge("config", "--config", str(toml), "--chain", "phuong-1", "--upper-host", "h",
                  "--out", "-") == 2
    toml.write_text('site = "Trường A"\nschool_name = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"server.toml:1: site"):
        bridge("config", "--config", str(toml), "--upper-host", "h", "--out", "-")


def test_the_upper_acl_pins_each_login_to_its_own_sites(capsys: pytest.CaptureFixture[str]) -> None:
    assert bridge("acl", "--sites", "thcs-a, thcs-b", "--commune", "phuong-1=thcs-a") == 0
    lines = capsys.readouterr().out.splitlines()
    blocks: dict[str, list[str]] = {}
    user = None
    for line in lines:
        if line.startswith("user "):
            user = line.split()[1]
            blocks[user] = []
        elif line.startswith(("topic ", "pattern ")):
            assert user is not None, f"{line!r} would apply to anonymous clients"
            blocks[user].append(line)
    assert blocks == {
        "bridge-thcs-a": ["topic write thuvien/v1/thcs-a/upward/#",
                          "topic readwrite thuvien/v1/thcs-a/bridge/state"],
        "bridge-thcs-b": ["topic write thuvien/v1/thcs-b/upward/#",
                          "topic readwrite thuvien/v1/thcs-b/bridge/state"],
        "bridge-phuong-1": ["topic readwrite thuvien/v1/phuong-1/bridge/state",
                            "topic write thuvien/v1/thcs-a/upward/#",
                            "topic write thuvien/v1/thcs-a/bridge/state"],
        AGGREGATE: ["topic read thuvien/v1/+/upward/#", "topic read thuvien/v1/+/bridge/state"],
    }
    with pytest.raises(BridgeError):
        render_upper_acl(["thcs-a", "thcs-a"])
    assert bridge("acl", "--sites", "THCS A") == 1
    assert "thcs" in capsys.readouterr().err.lower()


def test_the_generated_file_survives_a_reload_of_a_broker_that_dropped_root(tmp_path: Path) -> None:
    # Mosquitto reads conf.d again on SIGHUP (`systemctl reload mosquitto`, which
    # `thuvien station add` asks for) as the user it dropped to: a file it cannot open
    # makes it refuse the whole reload, new station logins included.
    binary = mosquitto_binary()
    assert binary is not None, "Mosquitto is not installed: apt-get install mosquitto"
    folder = Path(tempfile.mkdtemp(prefix="thuvien-bridge-reload-"))
    try:
        folder.chmod(0o755)  # the dropped user walks into it
        conf_d = folder / "conf.d"
        toml = folder / "server.toml"
        toml.write_text('site = "thcs-a"\nschool_name = "A"\n', encoding="utf-8")
        (folder / "pw").write_text("mat-khau", encoding="utf-8")
        assert bridge("config", "--config", str(toml), "--upper-host", "127.0.0.1", "--upper-port",
                      str(free_port()), "--password-file", str(folder / "pw"),
                      "--out", str(conf_d / "thuvien-bridge.conf")) == 0
        conf_d.chmod(0o755)
        log = folder / "mosquitto.log"
        lines = [f"listener {free_port()} 127.0.0.1", "allow_anonymous true", "persistence false",
                 f"log_dest file {log}", "log_type all", f"include_dir {conf_d}"]
        if os.geteuid() == 0:
            lines.insert(0, "user mosquitto" if _has_user("mosquitto") else "user root")
        (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        log.touch()
        log.chmod(0o666)
        process = subprocess.Popen([str(binary), "-c", str(folder / "mosquitto.conf")],
                                   stderr=subprocess.PIPE, start_new_session=True)
        try:
            wait_until(lambda: " running" in log.read_text(), what="mosquitto to start")
            process.send_signal(signal.SIGHUP)
            wait_until(lambda: "Reloading config" in log.read_text(), what="the reload")
            time.sleep(0.3)  # the log line comes first, then the files are read
            text = log.read_text()
            assert "Unable to open config file" not in text and "Error found at" not in text, text
            assert process.poll() is None
        finally:
            process.terminate()
            process.wait(10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid
