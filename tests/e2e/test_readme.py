"""The README's promises, run as a user would: the protocol by hand and the demo."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def by_hand_commands(port: int) -> list[list[str]]:
    block = README.split("<!-- by-hand:start -->", 1)[1].split("<!-- by-hand:end -->", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("mosquitto_")]
    assert len(lines) == 2, "the README's by-hand block has one mosquitto_sub and one mosquitto_pub"
    return [[str(port) if word == "1883" else word for word in shlex.split(line)] for line in lines]


@pytest.fixture
def raw_status():  # type: ignore[no-untyped-def]
    """Wait for a status on a broker's port that `wanted(status)` accepts."""
    import queue

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    clients = []

    def wait(port: int, topic: str, wanted, timeout: float = 60.0) -> dict:  # type: ignore[no-untyped-def]
        seen: queue.Queue[dict] = queue.Queue()
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        client.on_message = lambda _c, _u, m: seen.put(json.loads(m.payload))
        client.connect("127.0.0.1", port)
        client.loop_start()
        clients.append(client)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = seen.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if wanted(status):
                return status
        pytest.fail(f"no status as wanted on {topic}")

    yield wait
    for client in clients:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def demo_server(mosquitto, tmp_path):  # type: ignore[no-untyped-def]
    """The server exactly as `thuvien demo` configures and fills it."""
    from protocol.configfile import load_toml
    from server import db
    from server.app import start_server
    from server.config import ServerConfig
    from server.seed import seed_demo
    from thuvien.demo import school_year_start, server_toml

    text = server_toml(tmp_path / "demo.db", mosquitto.port, web_port=None)
    config = load_toml(text, "demo server.toml", ServerConfig)
    db.upgrade(config.database.url)
    engine = db.make_engine(config.database.url)
    seed_demo(db.session_factory(engine), school_year_start=school_year_start())
    engine.dispose()
    server = start_server(config)
    assert server.service.connected.wait(10)
    yield server
    server.stop()


def test_checkout_by_hand_with_mosquitto_clients(demo_server, mosquitto) -> None:
    sub_cmd, pub_cmd = by_hand_commands(mosquitto.port)
    replies = []
    for _attempt in range(2):  # the second time, the same id must give the same reply
        sub = subprocess.Popen(sub_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # mosquitto_sub has no "subscribed" signal; give it time to subscribe
        subprocess.run(pub_cmd, check=True, timeout=10)
        out, err = sub.communicate(timeout=15)
        assert sub.returncode == 0, err
        replies.append(json.loads(out.strip().splitlines()[-1]))
    first, second = replies
    assert first["ok"] is True, first
    assert first["result"]["title"] and re.match(r"\d{4}-\d{2}-\d{2}$", first["result"]["due"])
    assert first["id"] == json.loads(pub_cmd[pub_cmd.index("-m") + 1])["id"]
    assert second == first
    from sqlalchemy import func, select

    from server.db import session_factory
    from server.models import LedgerEntry

    with session_factory(demo_server.engine)() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 1


def _read_until(process: subprocess.Popen, marker: str, timeout: float = 60.0) -> str:
    """Read the demo's stdout until `marker` appears (os.read: no blocking on partial lines)."""
    seen = ""
    deadline = time.monotonic() + timeout
    fd = process.stdout.fileno()  # type: ignore[union-attr]
    os.set_blocking(fd, False)
    while marker not in seen:
        if time.monotonic() > deadline:
            pytest.fail(f"{marker!r} did not appear; the demo printed:\n{seen}")
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.05)
            continue
        if not chunk:
            pytest.fail(f"the demo exited before printing {marker!r}:\n{seen}")
        seen += chunk.decode("utf-8", "replace")
    return seen


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_lends_a_book_from_the_terminal_and_stops_cleanly(tmp_path, broker) -> None:
    from thuvien.broker import free_port

    process = subprocess.Popen(
        [sys.executable, "-m", "thuvien.cli", "demo", "--dir", str(tmp_path / "demo"),
         "--broker", broker, "--port", str(free_port()), "--headless"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        banner = _read_until(process, "Ctrl-C")
        assert "mqtt://127.0.0.1:" in banner and "thcs-demo" in banner
        cards = re.findall(r"^\s+(HS-\d{4}-\d{4})\s", banner, re.MULTILINE)
        books = re.findall(r"^\s+(TN\d{5})\s+\[TN\]\s+(.+)$", banner, re.MULTILINE)
        assert cards and books, banner
        process.stdin.write(f"{cards[0]}\n".encode())  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
        _read_until(process, "Xin chào")
        process.stdin.write(f"{books[0][0]}\n".encode())  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
        lent = _read_until(process, "Hạn trả")
        assert books[0][1].strip() in lent
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / "demo" / "thuvien.db").exists()


def test_demo_opens_the_touch_kiosk_where_there_is_a_screen(tmp_path, raw_status) -> None:
    """With a screen (here SDL's offscreen one) the demo's kiosk is the Kivy touch screen."""
    from thuvien.broker import free_port

    port = free_port()
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy",
           "KIVY_NO_CONSOLELOG": "1", "KIVY_HOME": str(tmp_path / "kivy")}
    process = subprocess.Popen(
        [sys.executable, "-m", "thuvien.cli", "demo", "--dir", str(tmp_path / "demo"),
         "--broker", "mosquitto", "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    try:
        banner = _read_until(process, "Ctrl-C")
        assert "CB-0001" in banner and "2468" in banner
        status = raw_status(port, "thuvien/v1/thcs-demo/station/kiosk-1/status",
                            lambda s: s.get("state") == "online" and s.get("devices", {}).get("scanner") == "ok")
        assert status["kind"] == "kiosk"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


class _Watch:
    """Everything published under a topic filter on a broker, from now on, kept in order."""

    def __init__(self, port: int, topic: str) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.log: list[tuple[str, dict]] = []
        self._changed = threading.Condition()
        subscribed = threading.Event()

        def on_message(_c, _u, m) -> None:  # type: ignore[no-untyped-def]
            with self._changed:
                self.log.append((m.topic, json.loads(m.payload) if m.payload else {}))
                self._changed.notify_all()

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def wait_for(self, wanted, timeout: float = 20.0) -> dict:  # type: ignore[no-untyped-def]
        """The first message so far, or to come, that `wanted(topic, body)` accepts."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for topic, body in self.log:
                    if wanted(topic, body):
                        return body
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n".join(f"{topic} {body}" for topic, body in self.log)
                    pytest.fail(f"the message waited for did not come; seen:\n{seen}")
                self._changed.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_demo_runs_a_gate_and_a_return_box_beside_the_kiosk(tmp_path) -> None:
    """As the banner says: a book walked through the gate unlent alarms; a lent one passes and
    is then returned in the return box, all with `thuvien sim` from another terminal."""
    from thuvien.broker import free_port

    port, web_port = free_port(), free_port()
    folder = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "thuvien.cli", "demo", "--dir", str(folder),
         "--broker", "mosquitto", "--port", str(port), "--headless", "--web-port", str(web_port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    watch = None

    def sim(*words: str) -> str:
        done = subprocess.run([sys.executable, "-m", "thuvien.cli", "sim", "--dir", str(folder), *words],
                              capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    try:
        banner = _read_until(process, "Ctrl-C")
        assert "thuvien sim" in banner and "gate-1" in banner and "returnbox-1" in banner
        # The demo serves the catalogue and the staff pages too, as its banner says.
        import urllib.parse
        import urllib.request

        assert f"http://127.0.0.1:{web_port}/staff" in banner
        query = urllib.parse.urlencode({"q": "de men phieu luu ky"})
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/?{query}", timeout=10) as page:
            assert page.status == 200 and "Dế Mèn phiêu lưu ký" in page.read().decode("utf-8")
        card = re.findall(r"^\s+(HS-\d{4}-\d{4})\s", banner, re.MULTILINE)[0]
        books = [code for code, _title in re.findall(r"^\s+(TN\d{5})\s+\[TN\]\s+(.+)$", banner, re.MULTILINE)]
        watch = _Watch(port, "thuvien/v1/thcs-demo/#")
        watch.wait_for(lambda t, b: t.endswith("/gate-1/status") and b.get("devices", {}).get("rfid") == "ok")
        watch.wait_for(lambda t, b: t.endswith("/returnbox-1/status") and b.get("state") == "online")

        # A book nobody borrowed walks out: the gate alarms and the librarian gets an alert.
        sim("gate-1", "pass", books[1])
        alert = watch.wait_for(lambda t, b: t.endswith("/alert") and b.get("type") == "gate.alarm")
        assert alert["data"]["item"] == books[1] and alert["data"]["title"] in alert["message"]

        # Borrowed at the kiosk, the same kind of walk passes; then the book goes back in the box.
        process.stdin.write(f"{card}\n{books[0]}\n".encode())  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
        _read_until(process, "Hạn trả")
        sim("gate-1", "pass", books[0], "0.5")
        sim("returnbox-1", "put", books[0])
        reply = watch.wait_for(lambda t, b: t.endswith("/returnbox-1/reply"))
        # The server answers with the accession number as the register writes it (TN.00315).
        assert reply["ok"] and reply["result"]["item"].replace(".", "") == books[0]
        entry = watch.wait_for(lambda t, b: t.endswith("/ledger") and b.get("op") == "return")
        assert entry["station"] == "returnbox-1" and entry["item"] == reply["result"]["item"]
        # The walk of the lent book raised nothing: the only gate alarm was the first one.
        alarms = [body for topic, body in watch.log if topic.endswith("/alert")]
        assert [a["data"]["item"] for a in alarms] == [books[1]]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if watch is not None:
            watch.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not (folder / "sim" / "gate-1.sock").exists()  # the stations cleaned up
