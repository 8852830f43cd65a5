"""The web running next to the real server on a real Mosquitto, over plain HTTP."""

from __future__ import annotations

import json
import queue
import re
import socket
import threading
import time
import uuid

import httpx
import pytest

from protocol import Command, parse_model, topics
from server import db
from server.web.run import WebStartError, start_web
from web_fixtures import PASSWORDS, LiveWeb, make_library


def signed_in(web: LiveWeb, name: str) -> httpx.Client:
    client = httpx.Client(base_url=web.url, follow_redirects=False, timeout=10)
    form = client.get("/staff/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    response = client.post("/staff/login", data={"name": name, "password": PASSWORDS[name],
                                                  "csrf_token": token})
    assert response.status_code == 303
    return client


def csrf(client: httpx.Client) -> str:
    page = client.get("/staff/stations")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


class CommandListener:
    def __init__(self, web: LiveWeb, station: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.got: queue.Queue[bytes] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listen-{uuid.uuid4().hex[:6]}")
        self.client.on_message = lambda _c, _u, message: self.got.put(message.payload)
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect(web.config.mqtt.host, web.config.mqtt.port)
        self.client.loop_start()
        self.client.subscribe(topics.station_topic(web.config.site, station, "command"), qos=1)
        assert subscribed.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_commands_reach_the_station(live_web: LiveWeb) -> None:
    listener = CommandListener(live_web, "kiosk-1")
    try:
        client = signed_in(live_web, "thuthu")
        token = csrf(client)
        sent = client.post("/staff/stations/kiosk-1/command", data={"csrf_token": token, "cmd": "lock"})
        assert sent.status_code == 303
        assert "Đã gửi lệnh “lock” đến kiosk-1." in client.get(sent.headers["location"]).text
        lock = parse_model(Command, listener.got.get(timeout=5))
        assert lock.cmd == "lock" and lock.args == {}

        said = client.post("/staff/stations/kiosk-1/command",
                           data={"csrf_token": token, "cmd": "say", "text": "  Thư viện   đóng cửa lúc 17 giờ "})
        assert said.status_code == 303
        say = parse_model(Command, listener.got.get(timeout=5))
        assert say.cmd == "say" and say.args == {"text": "Thư viện đóng cửa lúc 17 giờ"}
        assert say.id != lock.id

        # Refused, with nothing published: no text, too long, unknown command or station.
        for data, status in [({"cmd": "say", "text": "   "}, 400), ({"cmd": "say", "text": "x" * 201}, 400),
                             ({"cmd": "reboot"}, 400)]:
            assert client.post("/staff/stations/kiosk-1/command",
                               data={"csrf_token": token, **data}).status_code == status
        assert client.post("/staff/stations/no-such-kiosk/command",
                           data={"csrf_token": token, "cmd": "lock"}).status_code == 404
        with pytest.raises(queue.Empty):
            listener.got.get(timeout=0.5)
    finally:
        listener.close()


def test_live_stream_sends_the_grid_and_changes(live_web: LiveWeb) -> None:
    client = signed_in(live_web, "xem")
    events: queue.Queue[tuple[str, str]] = queue.Queue()

    def read() -> None:
        with client.stream("GET", "/staff/live") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.put((kind, line[6:]))

    threading.Thread(target=read, daemon=True).start()
    first = [events.get(timeout=5) for _ in range(2)]
    assert first[0] == ("live", "1") and first[1][0] == "station"

    status = json.dumps({"v": 1, "state": "online", "kind": "gate", "devices": {"rfid": "fault"},
                         "outbox": 2}).encode()
    from test_staff_browser import publish

    publish(live_web, topics.station_topic(live_web.config.site, "gate-7", "status"), status)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kind, data = events.get(timeout=5)
        if kind == "station" and json.loads(data)["name"] == "gate-7":
            html = json.loads(data)["html"]
            if "state-online" in html:  # not the grid's first picture of it
                break
    else:
        pytest.fail("no update for gate-7")
    assert "state-online" in html and "rfid: <strong>lỗi</strong>" in html and "2 yêu cầu chờ gửi" in html
    assert "Gửi lời nhắn" not in html  # a viewer gets no command buttons

    started = time.monotonic()
    live_web.web.stop()  # with the stream still open
    assert time.monotonic() - started < 3.5
    assert not live_web.web.thread.is_alive()


def test_a_busy_port_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = make_library(tmp_path)
    engine = db.make_engine(config.database.url)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(WebStartError, match="cannot listen on 127.0.0.1"):
            start_web(config, engine, host="127.0.0.1", port=taken.getsockname()[1], mqtt=None)
    finally:
        taken.close()
        engine.dispose()


def test_without_a_broker_the_pages_still_work(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from web_fixtures import add_staff

    config = make_library(tmp_path)
    engine = db.make_engine(config.database.url)
    handle = start_web(config, engine, host="127.0.0.1", port=0, mqtt=None)
    try:
        add_staff(handle.context.sessions, handle.context.clock())
        web = LiveWeb(config=config, server=None, web=handle, clock=None, tmp_path=tmp_path)  # type: ignore[arg-type]
        client = signed_in(web, "thuthu")
        page = client.get("/staff/stations")
        assert "Không có trạng thái trực tiếp" in page.text
        assert 'id="station-kiosk-1"' in page.text  # the registered stations, from the database
        refused = client.post("/staff/stations/kiosk-1/command",
                              data={"csrf_token": csrf(client), "cmd": "lock"})
        assert refused.status_code == 503 and "Không gửi được lệnh" in refused.text
    finally:
        handle.stop()
        engine.dispose()
