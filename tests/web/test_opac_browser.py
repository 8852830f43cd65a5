"""The catalogue in a real Chromium (Playwright, Debian's /usr/bin/chromium) against the
web served by uvicorn on a real SQLite file: the unaccented searches, and a reader who
sees their own loans and never another's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opac_library import PINS, make_opac_library
from server import db
from server.web.run import WebHandle, start_web


@pytest.fixture
def opac_url(tmp_path: Path) -> Iterator[str]:
    config = make_opac_library(tmp_path)
    engine = db.make_engine(config.database.url)
    web: WebHandle = start_web(config, engine, host="127.0.0.1", port=0, mqtt=None)
    yield web.url
    web.stop()
    engine.dispose()


def search(page, base: str, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/")
    page.get_by_role("searchbox").fill(text)
    page.get_by_role("button", name="Tìm", exact=True).click()
    page.wait_for_url("**/?q=*")
    return page.locator("a.opac-title").all_inner_texts()


def test_unaccented_searches_in_the_browser(page, opac_url: str) -> None:  # type: ignore[no-untyped-def]
    assert search(page, opac_url, "de men phieu luu ky") == ["Dế Mèn phiêu lưu ký"]
    found = search(page, opac_url, "duong")
    assert set(found) == {"Đường Kách Mệnh", "Đường xưa mây trắng", "Con đường xưa em đi"}
    assert found[-1] == "Con đường xưa em đi"  # titles that start with the word come first
    page.get_by_role("link", name="Đường xưa mây trắng").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Đường xưa mây trắng"
    assert page.get_by_text("Đang cho mượn, hạn trả 19/11/2026").is_visible()


def test_reader_sees_own_loans_not_anothers(page, opac_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{opac_url}/ban-doc/abc123")  # what the receipt's QR code opens
    page.get_by_label("Số thẻ").fill("HS-2025-0001")
    page.get_by_label("Mã PIN").fill(PINS["HS-2025-0001"])
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(f"{opac_url}/ban-doc")
    body = page.locator("main").inner_text()
    assert "Nguyễn Văn An" in body and "Dế Mèn phiêu lưu ký" in body and "01/12/2026" in body
    assert "Đường xưa mây trắng" not in body
    for path in ("/ban-doc/HS-2025-0002", "/ban-doc?reader=HS-2025-0002"):
        page.goto(f"{opac_url}{path}")
        body = page.locator("main").inner_text()
        assert "Nguyễn Văn An" in body and "Trần Thị Bình" not in body
        assert "Đường xưa mây trắng" not in body
    page.get_by_role("button", name="Đăng xuất").click()
    page.wait_for_url("**/ban-doc?bye=1")
    assert "Dế Mèn" not in page.locator("main").inner_text()


def test_works_on_a_phone(browser, opac_url: str) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(locale="vi-VN", viewport={"width": 360, "height": 740},
                                  is_mobile=True, has_touch=True)
    try:
        phone = context.new_page()
        phone.goto(f"{opac_url}/?q=de+men")
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert phone.evaluate("document.documentElement.scrollWidth") <= 360
        phone.get_by_role("link", name="Dế Mèn phiêu lưu ký").click()
        assert phone.evaluate("document.documentElement.scrollWidth") <= 360
        assert phone.get_by_text("TN.00001").is_visible()
    finally:
        context.close()
