"""Retained status of server and station, and "offline" through the last will."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocol import topics

from e2e_library import fill


def write_configs(tmp_path: Path, site: str, port: int) -> tuple[Path, Path]:
    from server import db

    url = f"sqlite:///{tmp_path / 'library.db'}"
    db.upgrade(url)
    fill(url)
    server = tmp_path / "server.toml"
    server.write_text(f"""
site = "{site}"
school_name = "Trường THCS Thử nghiệm"
[database]
url = "{url}"
[mqtt]
host = "127.0.0.1"
port = {port}
[[circulation.policy]]
reader_kind = "student"
item_kind = "TN"
max_items = 2
""", encoding="utf-8")
    station = tmp_path / "station.toml"
    station.write_text(f"""
site = "{site}"
station = "kiosk-9"
[mqtt]
host = "127.0.0.1"
port = {port}
""", encoding="utf-8")
    return server, station


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "thuvien.cli", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_status(client, topic: str, state: str, timeout: float = 10.0, **fields: object) -> dict:  # type: ignore[no-untyped-def]
    """The first status in `state` (with these `fields`, when given): a station says
    "online" as soon as it is connected, and again once its devices have answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got_topic, payload, _retained = client.next(timeout=deadline - time.monotonic())
        except Exception:
            break
        if got_topic == topic and payload:
            status = json.loads(payload)
            if status["state"] == state and all(status.get(k) == v for k, v in fields.items()):
                return status
    pytest.fail(f"no {state!r} status on {topic} within {timeout} s")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_status_online_then_offline(mosquitto, site, raw, tmp_path, how) -> None:
    server_file, station_file = write_configs(tmp_path, site, mosquitto.port)
    server_topic = topics.server_status(site)
    station_topic = topics.station_topic(site, "kiosk-9", "status")
    # A watcher per topic: waiting for one must not swallow the other's news (the
    # station may well be online before the server).
    server_watch, station_watch = raw("status-watch-server"), raw("status-watch-station")
    server_watch.subscribe(server_topic)
    station_watch.subscribe(station_topic)

    server = start("server", "--config", str(server_file))
    station = start("kiosk", "--config", str(station_file), "--headless")
    try:
        server_status = wait_for_status(server_watch, server_topic, "online")
        assert server_status["kind"] == "server" and server_status["version"]
        station_status = wait_for_status(station_watch, station_topic, "online",
                                         devices={"scanner": "ok"})
        assert station_status["kind"] == "kiosk"

        # A client that comes later still learns both states: they are retained.
        late = raw("status-late")
        late.subscribe(server_topic)
        _, payload, retained = late.next()
        assert retained and json.loads(payload)["state"] == "online"

        for process in (station, server):
            process.send_signal(how)
            process.wait(timeout=10)
        assert wait_for_status(station_watch, station_topic, "offline") == {"v": 1, "state": "offline"}
        assert wait_for_status(server_watch, server_topic, "offline") == {"v": 1, "state": "offline"}
        if how == signal.SIGTERM:
            assert server.returncode == 0 and station.returncode == 0
    finally:
        for process in (station, server):
            if process.poll() is None:
                process.kill()
                process.wait()

    after = raw("status-after")
    after.subscribe(station_topic)
    _, payload, retained = after.next()
    assert retained and json.loads(payload)["state"] == "offline"
