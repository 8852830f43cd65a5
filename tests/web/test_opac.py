"""The public catalogue's pages through Starlette's TestClient on the real app and a real
SQLite file: search, a title's copies, the language switch, and the reader's own page
(sign-in with card and PIN, CSRF, lockout, nobody else's loans)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from clocks import WallClock
from e2e_library import START
from opac_library import LOANS, PINS, make_opac_library
from server import db
from server.web.app import build_app
from server.web.config import WebConfig
from server.web.context import WebContext
from web_fixtures import PASSWORDS, add_staff


@pytest.fixture
def opac(tmp_path: Path) -> Iterator[WebContext]:
    config = make_opac_library(tmp_path)
    engine = db.make_engine(config.database.url)
    context = WebContext(config=config, web=WebConfig(), sessions=db.session_factory(engine),
                         engine=engine, clock=WallClock(START))
    add_staff(context.sessions, context.clock())
    yield context
    engine.dispose()


def client(context: WebContext, address: str = "10.0.0.7") -> TestClient:
    return TestClient(build_app(context), follow_redirects=False, client=(address, 50000))


def result_titles(html: str) -> list[str]:
    return re.findall(r'class="opac-title" href="/sach/\d+">([^<]+)</a>', html)


def sign_in(web: TestClient, card: str, pin: str) -> object:
    form = web.get("/ban-doc")
    token = web.cookies.get("thuvien_reader_csrf")
    assert token and f'value="{token}"' in form.text
    return web.post("/ban-doc/dang-nhap", data={"card": card, "pin": pin, "csrf_token": token})


# --- search --------------------------------------------------------------------------------

def test_unaccented_search_finds_de_men(opac: WebContext) -> None:
    page = client(opac).get("/", params={"q": "de men phieu luu ky"})
    assert page.status_code == 200
    assert result_titles(page.text) == ["Dế Mèn phiêu lưu ký"]
    assert "3/4 cuốn có sẵn" in page.text  # one of its four copies is lent


def test_duong_finds_the_titles_with_d_stroke(opac: WebContext) -> None:
    found = result_titles(client(opac).get("/", params={"q": "duong"}).text)
    assert found[:2] in (["Đường Kách Mệnh", "Đường xưa mây trắng"], ["Đường xưa mây trắng", "Đường Kách Mệnh"])
    assert set(found) == {"Đường Kách Mệnh", "Đường xưa mây trắng", "Con đường xưa em đi"}


def test_filters_and_codes(opac: WebContext) -> None:
    web = client(opac)
    assert result_titles(web.get("/", params={"q": "duong", "kind": "TN"}).text) == ["Đường xưa mây trắng"]
    assert result_titles(web.get("/", params={"q": "duong", "subject": "Chính trị - Xã hội"}).text) == [
        "Đường Kách Mệnh"]
    assert result_titles(web.get("/", params={"q": "TN00001"}).text) == ["Dế Mèn phiêu lưu ký"]
    assert "Không có sách nào" in web.get("/", params={"q": "khong co cuon nay"}).text


def test_bad_parameters_get_a_message_not_a_crash(opac: WebContext) -> None:
    web = client(opac)
    bad = web.get("/", params={"q": "duong", "kind": "XX"})
    assert bad.status_code == 400 and "Không hiểu yêu cầu tìm kiếm" in bad.text
    assert web.get("/", params={"q": "duong", "page": "abc"}).status_code == 200
    assert web.get("/", params={"q": '"NEAR( * : OR', "field": "title"}).status_code == 200
    assert web.get("/sach/999999").status_code == 404


def test_title_page_shows_copies_shelf_and_due_date(opac: WebContext) -> None:
    web = client(opac)
    results = web.get("/", params={"q": "de men"})
    title_id = re.search(r'href="/sach/(\d+)"', results.text).group(1)  # type: ignore[union-attr]
    page = web.get(f"/sach/{title_id}", headers={"referer": str(results.url)})
    assert page.status_code == 200
    assert "TN.00001" in page.text and "Đang cho mượn, hạn trả 01/12/2026" in page.text
    assert page.text.count("Có sẵn") >= 3
    assert 'href="/?q=de+men"' in page.text  # back to the same results


def test_reference_copy_is_marked(opac: WebContext) -> None:
    web = client(opac)
    title_id = re.search(r'href="/sach/(\d+)"', web.get("/", params={"q": "tu dien"}).text).group(1)  # type: ignore[union-attr]
    assert "Chỉ đọc tại thư viện" in web.get(f"/sach/{title_id}").text


def test_english_switch(opac: WebContext) -> None:
    web = client(opac)
    switched = web.get("/lang/en", params={"next": "/?q=duong"})
    assert switched.status_code == 303 and switched.headers["location"] == "/?q=duong"
    page = web.get("/?q=duong")
    assert "results for" in page.text and "Search the catalogue" in page.text
    assert 'lang="en"' in page.text


# --- the reader's page ---------------------------------------------------------------------

def test_a_reader_sees_their_own_loans_only(opac: WebContext) -> None:
    web = client(opac)
    response = sign_in(web, "hs-2025-0001", PINS["HS-2025-0001"])  # lower case is fine
    assert response.status_code == 303 and response.headers["location"] == "/ban-doc"
    page = web.get("/ban-doc")
    assert "Nguyễn Văn An" in page.text and "Dế Mèn phiêu lưu ký" in page.text
    assert "01/12/2026" in page.text and page.headers["cache-control"] == "no-store"
    other_title = LOANS["HS-2025-0002"][0][1]
    assert other_title not in page.text and "Trần Thị Bình" not in page.text
    # No address names another reader: they all land on the signed-in reader's page.
    for path in ("/ban-doc/HS-2025-0002", "/ban-doc?reader=HS-2025-0002", "/ban-doc/2"):
        followed = web.get(path, follow_redirects=True)
        assert "Nguyễn Văn An" in followed.text and other_title not in followed.text


def test_overdue_loan_is_flagged(opac: WebContext) -> None:
    web = client(opac)
    sign_in(web, "HS-2025-0002", PINS["HS-2025-0002"])
    page = web.get("/ban-doc").text
    assert "Đường xưa mây trắng" in page and "Quá hạn 2 ngày" in page


def test_receipt_qr_address_opens_the_sign_in(opac: WebContext) -> None:
    web = client(opac)
    hop = web.get("/ban-doc/abc123")
    assert hop.status_code == 303 and hop.headers["location"] == "/ban-doc"
    assert "Đăng nhập bạn đọc" in web.get("/ban-doc").text


def test_wrong_pin_no_pin_and_csrf(opac: WebContext) -> None:
    web = client(opac)
    assert sign_in(web, "HS-2025-0001", "0000").status_code == 401  # type: ignore[attr-defined]
    assert sign_in(web, "NOBODY-1", "1357").status_code == 401  # type: ignore[attr-defined]
    no_pin = sign_in(web, "HS-2025-0003", "1234")
    assert no_pin.status_code == 403 and "Hãy nhờ cán bộ thư viện" in no_pin.text  # type: ignore[attr-defined]
    forged = client(opac).post("/ban-doc/dang-nhap", data={"card": "HS-2025-0001", "pin": "1357",
                                                           "csrf_token": "forged"})
    assert forged.status_code == 403 and "thuvien_reader" not in forged.cookies
    assert "Dế Mèn" not in web.get("/ban-doc").text


def test_lockout_after_five_failures(opac: WebContext) -> None:
    web = client(opac)
    for _ in range(4):
        assert sign_in(web, "HS-2025-0001", "9999").status_code == 401  # type: ignore[attr-defined]
    locked = sign_in(web, "HS-2025-0001", "9999")
    assert locked.status_code == 429 and "Đăng nhập sai quá nhiều lần" in locked.text  # type: ignore[attr-defined]
    # Locked: even the right PIN, from another computer, waits.
    assert sign_in(client(opac, "10.0.0.8"), "HS-2025-0001", "1357").status_code == 429  # type: ignore[attr-defined]
    opac.clock.advance(hours=1)  # type: ignore[attr-defined]
    assert sign_in(web, "HS-2025-0001", "1357").status_code == 303  # type: ignore[attr-defined]


def test_sign_out_needs_the_session_csrf(opac: WebContext) -> None:
    web = client(opac)
    sign_in(web, "HS-2025-0001", PINS["HS-2025-0001"])
    assert web.post("/ban-doc/dang-xuat", data={"csrf_token": "wrong"}).status_code == 403
    assert "Nguyễn Văn An" in web.get("/ban-doc").text
    token = re.search(r'action="/ban-doc/dang-xuat">\s*<input type="hidden" name="csrf_token" value="([^"]+)"',
                      web.get("/ban-doc").text).group(1)  # type: ignore[union-attr]
    out = web.post("/ban-doc/dang-xuat", data={"csrf_token": token})
    assert out.status_code == 303
    assert "Bạn đã đăng xuất" in web.get("/ban-doc?bye=1").text
    assert "Dế Mèn" not in web.get("/ban-doc").text


def test_reader_and_staff_sessions_are_apart(opac: WebContext) -> None:
    web = client(opac)
    sign_in(web, "HS-2025-0001", PINS["HS-2025-0001"])
    assert web.get("/staff/stations").status_code == 303  # a reader is not staff
    staff = client(opac)
    form = staff.get("/staff/login")
    token = staff.cookies.get("thuvien_login_csrf")
    assert form.status_code == 200 and token
    staff.post("/staff/login", data={"name": "thuthu", "password": PASSWORDS["thuthu"], "csrf_token": token})
    assert staff.cookies.get("thuvien_staff")
    assert "Đăng nhập bạn đọc" in staff.get("/ban-doc").text  # staff see no reader's loans
