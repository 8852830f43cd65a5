"""The staff pages in a real Chromium, against the real server, web and Mosquitto."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import select

from protocol import Event, encode, topics
from server.models import Alert
from web_browser import sign_in
from web_fixtures import PASSWORDS, LiveWeb


def station_toml(web: LiveWeb, name: str) -> Path:
    path = web.tmp_path / f"{name}.toml"
    mqtt = web.config.mqtt
    path.write_text(f'site = "{web.config.site}"\nstation = "{name}"\n'
                    f'[mqtt]\nhost = "{mqtt.host}"\nport = {mqtt.port}\n', encoding="utf-8")
    return path


def publish(web: LiveWeb, topic: str, payload: bytes) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:6]}")
    client.connect(web.config.mqtt.host, web.config.mqtt.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_grid_shows_a_killed_station_offline_within_seconds(live_web: LiveWeb, page) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, live_web.url, "thuthu", PASSWORDS["thuthu"])
    page.wait_for_url("**/staff/stations")
    page.locator("#live.on").wait_for()
    card = page.locator("#station-kiosk-9")

    kiosk = subprocess.Popen([sys.executable, "-m", "thuvien.cli", "kiosk", "--config",
                              str(station_toml(live_web, "kiosk-9")), "--headless"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=(live_web.tmp_path / "kiosk.log").open("wb"))
    try:
        # Live, without reloading the page: the card turns online with its devices.
        try:
            page.locator("#station-kiosk-9.state-online .device-ok").wait_for(timeout=30_000)
        except Exception:
            board = live_web.web.context.monitor.board.get("kiosk-9")  # type: ignore[union-attr]
            log = (live_web.tmp_path / "kiosk.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"kiosk-9 never showed online; the board has {board}; "
                                 f"the kiosk said:\n{log}") from None
        assert "trực tuyến" in card.inner_text() and "scanner: tốt" in card.inner_text()

        kiosk.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        kiosk.wait(timeout=10)
        page.locator("#station-kiosk-9.state-offline").wait_for(timeout=5_000)
        elapsed = time.monotonic() - killed
    finally:
        if kiosk.poll() is None:
            kiosk.kill()
            kiosk.wait()
    text = card.inner_text()
    assert "mất kết nối" in text and "từ " in text
    print(f"\nkiosk-9 offline on the page {elapsed * 1000:.0f} ms after SIGKILL")
    assert elapsed < 3.0


def test_an_alert_arrives_live_and_is_acknowledged(live_web: LiveWeb, page) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, live_web.url, "thuthu", PASSWORDS["thuthu"])
    page.goto(f"{live_web.url}/staff/alerts")
    page.get_by_text("Không có cảnh báo nào.").wait_for()

    event = Event(id=str(uuid.uuid4()), type="gate.alarm", at=dt.datetime.now(dt.timezone.utc),
                  data={"reason": "not_on_loan", "item": "TN.00001"})
    publish(live_web, topics.station_topic(live_web.config.site, "gate-1", "event"), encode(event))

    row = page.locator("tr.type-gate-alarm")
    row.wait_for()  # no reload: pushed over server-sent events
    assert "Dế Mèn phiêu lưu ký" in row.inner_text() and "gate-1" in row.inner_text()
    row.get_by_role("button", name="Xác nhận đã xử lý").click()
    page.get_by_text("Đã xác nhận cảnh báo.").wait_for()
    assert page.locator("tr.type-gate-alarm").count() == 0
    assert "bởi thuthu lúc" in page.locator(".acknowledged").inner_text()

    with live_web.web.context.sessions() as db:
        alert = db.scalars(select(Alert).where(Alert.type == "gate.alarm")).one()
    assert alert.acknowledged_by == "thuthu" and alert.acknowledged_at is not None


def test_a_forged_form_is_refused_in_the_browser(live_web: LiveWeb, page) -> None:  # type: ignore[no-untyped-def]
    event = Event(id=str(uuid.uuid4()), type="returnbox.full", at=dt.datetime.now(dt.timezone.utc),
                  data={"full": True})
    publish(live_web, topics.station_topic(live_web.config.site, "returnbox-1", "event"), encode(event))
    sign_in(page, live_web.url, "thuthu", PASSWORDS["thuthu"])
    page.goto(f"{live_web.url}/staff/alerts")
    row = page.locator("tr.type-returnbox-full")
    row.wait_for()
    # What a forged or stale form would carry: another token. Changed and sent in one
    # step, so that a live refresh of the list cannot put the real token back between.
    refused = page.get_by_text("Biểu mẫu đã hết hạn hoặc không đến từ trang này")
    for _attempt in range(3):
        # A live refresh of the list may replace the row, and a form taken out of the page
        # submits nothing: then the form is found again and sent again.
        if page.url.endswith("/staff/alerts"):
            row.locator("form").evaluate(
                "form => { form.elements.csrf_token.value = 'forged-token'; form.requestSubmit(); }")
        try:
            refused.wait_for(timeout=4000)
            break
        except PlaywrightTimeout:
            continue
    refused.wait_for()
    with live_web.web.context.sessions() as db:
        alert = db.scalars(select(Alert).where(Alert.type == "returnbox.full")).one()
    assert alert.acknowledged_at is None


def test_lockout_in_the_browser(live_web: LiveWeb, page) -> None:  # type: ignore[no-untyped-def]
    for attempt in range(4):
        sign_in(page, live_web.url, "admin", f"wrong-{attempt}")
        page.get_by_text("Sai tên đăng nhập hoặc mật khẩu.").wait_for()
    sign_in(page, live_web.url, "admin", "wrong-5")
    page.get_by_text("Đăng nhập sai quá nhiều lần").wait_for()
    sign_in(page, live_web.url, "admin", PASSWORDS["admin"])  # right, but locked
    page.get_by_text("Đăng nhập sai quá nhiều lần").wait_for()
    assert page.url.endswith("/staff/login")
