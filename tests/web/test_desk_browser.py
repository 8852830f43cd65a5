"""The desk in a real Chromium: a keyboard-wedge scanner's fast keystrokes and Enter lend
and return books without reloading the page, against the real server, web and Mosquitto;
the gates hear of the desk's loans on the ledger topic."""

from __future__ import annotations

import json
import queue
import uuid

from sqlalchemy import select

from protocol import topics
from server.models import LedgerEntry, Loan
from server.web.desk import DESK_STATION
from web_browser import sign_in
from web_fixtures import PASSWORDS, LiveWeb

SCANNER_DELAY_MS = 8  # a wedge scanner types a character every few milliseconds


def ledger_listener(web: LiveWeb) -> tuple[object, queue.Queue[dict]]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    heard: queue.Queue[dict] = queue.Queue()
    subscribed = queue.Queue()  # type: queue.Queue[bool]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gate-test-{uuid.uuid4().hex[:6]}")
    client.on_message = lambda _c, _u, message: heard.put(json.loads(message.payload))
    client.on_subscribe = lambda *_args: subscribed.put(True)
    client.connect(web.config.mqtt.host, web.config.mqtt.port)
    client.subscribe(topics.ledger(web.config.site), qos=1)
    client.loop_start()
    assert subscribed.get(timeout=5)
    return client, heard


def scan(page, code: str) -> None:  # type: ignore[no-untyped-def]
    page.keyboard.type(code, delay=SCANNER_DELAY_MS)
    page.keyboard.press("Enter")


def test_a_desk_checkout_and_return_by_typed_scanner_input(live_web: LiveWeb, page) -> None:  # type: ignore[no-untyped-def]
    listener, heard = ledger_listener(live_web)
    try:
        sign_in(page, live_web.url, "thuthu", PASSWORDS["thuthu"])
        page.wait_for_url("**/staff/stations")
        page.goto(f"{live_web.url}/staff/desk")
        field = page.locator("#desk-code")
        assert field.evaluate("el => el === document.activeElement")  # ready for the scanner
        page.evaluate("window.notReloaded = true")

        # The card and the book, back to back as a scanner sends them: the book is queued
        # behind the card and lent to the reader the card opened.
        scan(page, "HS-2025-0001")
        scan(page, "TN00001")
        page.locator('#loans tr[data-item="TN.00001"]').wait_for()
        assert page.locator("#account-name").inner_text().startswith("Nguyễn Văn An")
        assert "Đã cho mượn “Dế Mèn phiêu lưu ký” (TN.00001)" in page.locator("#desk-result").inner_text()
        assert page.evaluate("window.notReloaded") is True
        assert field.input_value() == ""
        assert field.evaluate("el => el === document.activeElement")

        entry = heard.get(timeout=5)
        assert (entry["op"], entry["item"], entry["station"], entry["patron"]) == (
            "checkout", "TN.00001", DESK_STATION, "HS-2025-0001")

        # Return mode: the same book scanned comes back.
        page.get_by_label("Trả sách").check()
        field.focus()
        scan(page, "TN00001")
        page.locator("#desk-result", has_text="Đã nhận trả").wait_for()
        page.locator('#loans tr[data-item="TN.00001"]').wait_for(state="detached")
        assert page.evaluate("window.notReloaded") is True
        assert heard.get(timeout=5)["op"] == "return"
    finally:
        listener.disconnect()  # type: ignore[attr-defined]
        listener.loop_stop()  # type: ignore[attr-defined]

    with live_web.web.context.sessions() as db:
        ops = [(e.op, e.station) for e in db.scalars(select(LedgerEntry).order_by(LedgerEntry.seq))]
        assert ops == [("checkout", DESK_STATION), ("return", DESK_STATION)]
        assert db.scalars(select(Loan)).all() == []


def test_the_desk_works_without_javascript(live_web: LiveWeb, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(locale="vi-VN", java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        sign_in(page, live_web.url, "thuthu", PASSWORDS["thuthu"])
        page.wait_for_url("**/staff/stations")
        page.goto(f"{live_web.url}/staff/desk")
        page.locator("#desk-code").fill("HS-2025-0002")
        page.locator("#desk-code").press("Enter")
        page.locator("#account-name", has_text="Trần Thị Bình").wait_for()
        page.locator("#desk-code").fill("TN00002")
        page.locator("#desk-code").press("Enter")
        page.locator('#loans tr[data-item="TN.00002"]').wait_for()
        # The renew button on the loan posts a plain form too.
        page.get_by_role("button", name="Gia hạn TN.00002").click()
        page.locator("#desk-result").wait_for()
        assert page.locator("#account-name").inner_text().startswith("Trần Thị Bình")
    finally:
        context.close()
    with live_web.web.context.sessions() as db:
        ops = [(e.op, e.station) for e in db.scalars(select(LedgerEntry).order_by(LedgerEntry.seq))]
        assert ops[0] == ("checkout", DESK_STATION)
