"""The desk over HTTP: roles, CSRF, checkout/return/renew through the circulation core,
reader look-up with Vietnamese folding, a reader's account, the overdue lists per class."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from server.models import LedgerEntry, Loan, Reader, Station
from server.web.desk import DESK_STATION, class_sort_key
from web_fixtures import StaffApp

CREATED = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
_RESULT = re.compile(r'id="desk-result"[^>]*>([^<]*)<')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def result(response: Any) -> str:
    found = _RESULT.search(response.text)
    assert found, response.text[:2000]
    return html.unescape(found.group(1))


class Desk:
    """A signed-in browser at the desk, posting plain forms as a page without JS does."""

    def __init__(self, app: StaffApp, name: str = "thuthu") -> None:
        self.app = app
        self.client = app.client()
        assert app.login(self.client, name).status_code == 303
        page = self.client.get("/staff/desk")
        assert page.status_code == 200
        self.csrf = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        self.reader = ""

    def nonce(self) -> str:
        # Random like a browser's: equal nonces are the same submitted form.
        return f"test-{uuid.uuid4().hex}"

    def scan(self, code: str, mode: str = "lend", nonce: str | None = None,
             fragment: bool = False) -> Any:
        response = self.client.post("/staff/desk/scan", data={
            "csrf_token": self.csrf, "code": code, "mode": mode, "reader": self.reader,
            "nonce": nonce or self.nonce()}, headers={"X-Desk-Fragment": "1"} if fragment else {})
        opened = re.search(r'id="desk-panel" data-reader="([^"]*)"', response.text)
        if opened:
            self.reader = html.unescape(opened.group(1))
        return response

    def renew(self, item: str) -> Any:
        return self.client.post("/staff/desk/renew", data={
            "csrf_token": self.csrf, "item": item, "reader": self.reader, "nonce": self.nonce()})


def ledger(app: StaffApp) -> list[tuple[str, str, str]]:
    with app.context.sessions() as db:
        return [(e.op, e.station, e.request_id) for e in
                db.scalars(select(LedgerEntry).order_by(LedgerEntry.seq))]


def loans(app: StaffApp) -> int:
    with app.context.sessions() as db:
        return db.scalar(select(func.count()).select_from(Loan)) or 0


def add_readers(app: StaffApp, *people: tuple[str, str, str | None]) -> None:
    with app.context.sessions.begin() as db:
        for code, name, class_name in people:
            db.add(Reader(code=code, name=name, kind="student" if class_name else "teacher",
                          class_name=class_name, created_at=CREATED))


# --- roles and CSRF ----------------------------------------------------------------------

def test_pages_need_sign_in_and_the_desk_needs_a_librarian(staff_app: StaffApp) -> None:
    anonymous = staff_app.client()
    for path in ("/staff/desk", "/staff/readers?q=an", "/staff/overdue", "/staff/today"):
        response = anonymous.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/staff/login")
    refused = anonymous.post("/staff/desk/scan", data={"code": "TN00001"})
    assert refused.status_code == 303 and "/staff/login" in refused.headers["location"]

    viewer = staff_app.client()
    staff_app.login(viewer, "xem")
    assert viewer.get("/staff/desk").status_code == 403
    assert viewer.get("/staff/readers?q=an").status_code == 403
    assert viewer.get("/staff/overdue").status_code == 200  # the principal may print the lists
    assert viewer.get("/staff/today").status_code == 200
    token = _CSRF.search(viewer.get("/staff/today").text).group(1)  # type: ignore[union-attr]
    denied = viewer.post("/staff/desk/scan", data={"csrf_token": token, "code": "HS-2025-0001"})
    assert denied.status_code == 403

    for name in ("thuthu", "admin"):
        client = staff_app.client()
        staff_app.login(client, name)
        page = client.get("/staff/desk")
        assert page.status_code == 200 and 'id="desk-code"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]


def test_a_post_without_the_session_csrf_token_changes_nothing(staff_app: StaffApp) -> None:
    desk = Desk(staff_app)
    desk.reader = "HS-2025-0001"
    for token in ("", "forged-token"):
        response = desk.client.post("/staff/desk/scan", data={
            "csrf_token": token, "code": "TN00001", "reader": desk.reader, "nonce": "abcdefgh1"})
        assert response.status_code == 403
    renew = desk.client.post("/staff/desk/renew", data={"item": "TN.00001", "reader": desk.reader})
    assert renew.status_code == 403
    assert ledger(staff_app) == [] and loans(staff_app) == 0


# --- circulation through the core ----------------------------------------------------------

def test_card_then_book_lends_through_the_core_as_the_desk_station(staff_app: StaffApp) -> None:
    desk = Desk(staff_app)
    opened = desk.scan("04a1b2c3")  # the NFC card's UID, typed in lower case
    assert opened.status_code == 200
    assert result(opened) == "Bạn đọc Nguyễn Văn An (HS-2025-0001)."
    assert desk.reader == "HS-2025-0001"

    lent = desk.scan("TN00001")
    assert result(lent) == "Đã cho mượn “Dế Mèn phiêu lưu ký” (TN.00001); hạn trả 01/12/2026."
    assert 'data-item="TN.00001"' in lent.text  # on the account at once

    entries = ledger(staff_app)
    assert [(op, station) for op, station, _ in entries] == [("checkout", DESK_STATION)]
    assert entries[0][2].startswith("desk-")
    with staff_app.context.sessions() as db:
        station = db.scalars(select(Station).where(Station.name == DESK_STATION)).one()
        assert (station.kind, station.active) == ("desk", True)


def test_the_same_form_posted_twice_lends_once(staff_app: StaffApp) -> None:
    desk = Desk(staff_app)
    desk.scan("HS-2025-0001")
    first = desk.scan("TN00001", nonce="reloaded-form-1")
    again = desk.scan("TN00001", nonce="reloaded-form-1")
    assert result(first) == result(again)
    assert "Đã cho mượn" in result(again)
    assert len(ledger(staff_app)) == 1 and loans(staff_app) == 1
    # A new form (a new nonce) is a new request: the core says it is already lent.
    third = desk.scan("TN00001")
    assert result(third).startswith("Chưa thực hiện được:")
    assert len(ledger(staff_app)) == 1


def test_the_rules_of_the_core_apply_at_the_desk(staff_app: StaffApp) -> None:
    desk = Desk(staff_app)
    # No reader yet: a book alone is not lent.
    alone = desk.scan("TN00001")
    assert alone.status_code == 409
    assert result(alone) == "Hãy quét thẻ bạn đọc trước, rồi quét sách cho mượn."

    desk.scan("HS-2025-0001")
    reference = desk.scan("TK00003")
    assert result(reference).startswith("Chưa thực hiện được: Sách này chỉ đọc tại thư viện")
    unknown = desk.scan("XX-NOT-A-BOOK")
    assert "XX-NOT-A-BOOK" in result(unknown) and result(unknown).startswith("Chưa thực hiện được")

    blocked = Desk(staff_app)
    shown = blocked.scan("HS-2025-0003")
    assert "Thẻ bị khoá: Làm mất sách chưa bồi thường" in html.unescape(shown.text)
    refused = blocked.scan("TN00002")
    assert "bị khóa" in result(refused)
    assert ledger(staff_app) == [] and loans(staff_app) == 0


@pytest.mark.parametrize("junk", ["", "   ", "x" * 129, "\x00\x01\x02"])
def test_junk_input_gets_a_clear_answer(staff_app: StaffApp, junk: str) -> None:
    desk = Desk(staff_app)
    desk.scan("HS-2025-0001")
    response = desk.scan(junk)
    assert response.status_code in (200, 400)
    assert result(response)
    assert desk.reader == "HS-2025-0001"  # the open reader stays open
    assert ledger(staff_app) == []


def test_return_mode_returns_and_says_how_late(staff_app: StaffApp) -> None:
    desk = Desk(staff_app)
    desk.scan("HS-2025-0001")
    desk.scan("TN00001")
    staff_app.clock.advance(days=12)  # due 1/12, now 3/12: two days late
    back = Desk(staff_app).scan("TN00001", mode="return")
    assert result(back) == "Đã nhận trả “Dế Mèn phiêu lưu ký” (TN.00001). Trễ 2 ngày."
    assert [op for op, _, _ in ledger(staff_app)] == ["checkout", "return"]
    assert loans(staff_app) == 0
    twice = Desk(staff_app).scan("TN00001", mode="return")
    assert result(twice).startswith("Chưa thực hiện được")
    assert len(ledger(staff_app)) == 2


def test_renew_buttons_renew_once_then_the_rule_refuses(staff_app: StaffApp) -> None:
    desk = Desk(staff_app)
    desk.scan("HS-2025-0001")
    desk.scan("TN00001")
    staff_app.clock.advance(days=3)  # Tuesday 24/11: 8 days on is Wednesday 2/12
    desk = Desk(staff_app)  # signed in again: the session of three days ago has ended
    desk.reader = "HS-2025-0001"
    renewed = desk.renew("TN.00001")
    assert result(renewed) == "Đã gia hạn “Dế Mèn phiêu lưu ký” (TN.00001); hạn trả mới 02/12/2026."
    again = desk.renew("TN.00001")
    assert "không thể gia hạn thêm" in result(again)
    assert [(op, station) for op, station, _ in ledger(staff_app)] == [
        ("checkout", DESK_STATION), ("renew", DESK_STATION)]


def test_the_fragment_is_the_panel_alone_for_the_script(staff_app: StaffApp) -> None:
    desk = Desk(staff_app)
    panel = desk.scan("HS-2025-0001", fragment=True)
    assert panel.status_code == 200
    assert panel.text.lstrip().startswith('<div id="desk-panel" data-reader="HS-2025-0001">')
    assert "<html" not in panel.text
    lent = desk.scan("TN00002", fragment=True)
    assert "Đã cho mượn" in result(lent) and 'data-item="TN.00002"' in lent.text


# --- readers -----------------------------------------------------------------------------------

def names_found(app: StaffApp, query: str) -> list[str]:
    client = app.client()
    app.login(client, "thuthu")
    page = client.get("/staff/readers", params={"q": query})
    assert page.status_code == 200
    return [html.unescape(n) for n in re.findall(r'<a href="/staff/desk\?reader=[^"]+">([^<]+)</a>', page.text)]


def test_reader_search_folds_vietnamese_and_sorts_in_vietnamese_order(staff_app: StaffApp) -> None:
    add_readers(staff_app, ("HS-2025-0101", "Phạm Văn Bảo", "6A2"),
                ("HS-2025-0102", "Lê Thị Ánh", "6A2"), ("HS-2025-0103", "Hoàng Đức Anh", "6A2"),
                ("HS-2025-0104", "Đỗ Minh Dũng", "6A10"))
    assert names_found(staff_app, "nguyen van a") == ["Nguyễn Văn An"]
    assert names_found(staff_app, "NGUYỄN văn") == ["Nguyễn Văn An"]
    # Given name first, Vietnamese letters: Anh, Ánh (tone breaks the tie), then Bảo;
    # plain code-point order would put "Ánh" after "Bảo".
    assert names_found(staff_app, "6a2") == ["Hoàng Đức Anh", "Lê Thị Ánh", "Phạm Văn Bảo"]
    assert names_found(staff_app, "duc") == ["Hoàng Đức Anh"]
    assert names_found(staff_app, "do dung") == ["Đỗ Minh Dũng"]
    assert names_found(staff_app, "hs-2025-0002") == ["Trần Thị Bình"]
    assert names_found(staff_app, "6a1") == ["Nguyễn Văn An", "Trần Thị Bình"]
    assert names_found(staff_app, "khong co ai") == []
    assert names_found(staff_app, "!!!") == []


def test_class_order_is_natural() -> None:
    assert sorted(["7A1", "6A10", None, "6A2", "10A1"], key=class_sort_key) == [
        "6A2", "6A10", "7A1", "10A1", None]


def test_an_account_shows_loans_overdue_marks_blocks_and_history(staff_app: StaffApp) -> None:
    desk = Desk(staff_app)
    desk.scan("HS-2025-0001")
    desk.scan("TN00001")
    desk.scan("TN00002")
    Desk(staff_app).scan("TN00002", mode="return")
    staff_app.clock.advance(days=12)  # TN.00001 due 1/12, now 3/12

    client = Desk(staff_app).client
    page = html.unescape(client.get("/staff/desk", params={"reader": "HS-2025-0001"}).text)
    loans_table = page[page.index('id="loans"'):page.index('id="history"')]
    assert 'class="loan overdue" data-item="TN.00001"' in loans_table
    assert "quá hạn 2 ngày" in loans_table
    assert "TN.00002" not in loans_table
    assert "Không được mượn: có 1 cuốn quá hạn." in page
    history = page[page.index('id="history"'):]
    rows = re.findall(r'<tr class="op-(\w+)">', history)
    assert rows == ["return", "checkout", "checkout"]  # newest first
    assert history.count(DESK_STATION) == 3

    unknown = client.get("/staff/desk", params={"reader": "HS-9999"})
    assert result(unknown) == "Không có bạn đọc nào có thẻ HS-9999."


# --- overdue lists ---------------------------------------------------------------------------

def test_overdue_lists_per_class_for_printing(staff_app: StaffApp) -> None:
    add_readers(staff_app, ("HS-2025-0201", "Vũ Thị Yến", "6A10"))
    for card, book in (("HS-2025-0002", "TN00001"), ("HS-2025-0001", "TN00002"),
                       ("GV-0001", "TN00003"), ("HS-2025-0201", "TN00004")):
        desk = Desk(staff_app)
        desk.scan(card)
        assert "Đã cho mượn" in result(desk.scan(book))
    staff_app.clock.advance(days=20)  # Friday 11/12: students' TN due 1/12, the teacher's 5/12

    viewer = staff_app.client()
    staff_app.login(viewer, "xem")
    page = html.unescape(viewer.get("/staff/overdue").text)
    assert '<link rel="stylesheet" href="/static/desk.css">' in page
    sections = re.findall(r'<section class="overdue-class" id="class-([^"]+)">', page)
    assert sections == ["6A1", "6A10", "none"]  # natural class order, teachers last
    assert page.count("Trường THCS Thử nghiệm") >= 3  # the school on every printed page
    assert page.count("Danh sách sách quá hạn ngày 11/12/2026") == 3
    six_a1 = page[page.index('id="class-6A1"'):page.index('id="class-6A10"')]
    rows = re.findall(r"<tr>\s*<td[^>]*>([^<]+)</td>\s*<td[^>]*>([^<]+)</td>\s*<td[^>]*>([^<]+)</td>"
                      r"\s*<td[^>]*>([^<]+)</td>\s*<td[^>]*>([^<]+)</td>", six_a1)
    assert rows == [("Nguyễn Văn An", "Dế Mèn phiêu lưu ký", "TN.00002", "01/12/2026", "10"),
                    ("Trần Thị Bình", "Dế Mèn phiêu lưu ký", "TN.00001", "01/12/2026", "10")]
    teachers = page[page.index('id="class-none"'):]
    assert "Phạm Thu Hà" in teachers and "TN.00003" in teachers and ">6</td>" in teachers

    one = html.unescape(viewer.get("/staff/overdue", params={"class": "6a10"}).text)
    assert re.findall(r'id="class-([^"]+)"', one) == ["6A10"]
    assert "Vũ Thị Yến" in one and "Nguyễn Văn An" not in one

    css = viewer.get("/static/desk.css").text
    assert "@media print" in css and "break-after: page" in css


def test_no_overdue_books_says_so(staff_app: StaffApp) -> None:
    client = staff_app.client()
    staff_app.login(client, "thuthu")
    page = client.get("/staff/overdue", params={"class": "<script>"})
    assert page.status_code == 200
    assert "Không có sách quá hạn." in page.text and "<script>" not in page.text
