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

    text = server_toml(tmp_path / "demo.db", mosquitto.port)
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
