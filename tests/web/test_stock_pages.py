"""The stocktake and weeding pages over HTTP: roles, CSRF, scanning with the running
progress, closing with its result, weeding's preview, the 10% confirmation, the lists."""

from __future__ import annotations

import html
import re
from typing import Any

from sqlalchemy import select, update
from starlette.testclient import TestClient

from server.models import Copy, CopyStatus, Stocktake, Withdrawal
from server.web.app import build_app
from server.web.auth import Auth
from server.web.context import TEMPLATES
from server.web.i18n import STAFF_VI, Catalogue
from server.web.records_stock import STOCK_VI, StockPages
from web_fixtures import StaffApp

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_CALL = re.compile(r"""_\(\s*(["'])(.+?)\1""")
_TAGS = re.compile(r"<[^>]+>")


def text(response: Any) -> str:
    """The page's visible words, one space between them."""
    return " ".join(html.unescape(_TAGS.sub(" ", response.text)).split())


class Staff:
    """A signed-in browser posting plain forms, as a page without JavaScript does."""

    def __init__(self, app: StaffApp, name: str = "thuthu") -> None:
        web = build_app(app.context)
        # Until the lead wires StockPages into build_app, the test mounts it itself.
        if not any(getattr(route, "path", "") == "/staff/stocktake" for route in web.routes):
            web.router.routes[0:0] = StockPages(app.context, Auth(app.context)).routes()
        self.client = TestClient(web, follow_redirects=False, client=("10.0.0.5", 50000))
        assert app.login(self.client, name).status_code == 303
        page = self.client.get("/staff/stocktake")
        assert page.status_code == 200
        self.csrf = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]

    def post(self, path: str, **data: str) -> Any:
        return self.client.post(path, data={"csrf_token": self.csrf, **data})


def _shelve(app: StaffApp) -> None:
    with app.context.sessions.begin() as session:
        session.execute(update(Copy).values(location="Giá B"))
        session.execute(update(Copy).where(Copy.kind == "TN").values(location="Giá A"))


def test_every_string_of_these_pages_has_a_vietnamese_text() -> None:
    catalogue = Catalogue(STAFF_VI, STOCK_VI)   # no msgid translated two ways
    missing = []
    for name in ("stocktake.html", "stocktake_missing.html", "weeding.html"):
        for _quote, msgid in _CALL.findall((TEMPLATES / "staff" / name).read_text(encoding="utf-8")):
            if msgid not in catalogue:
                missing.append(f"{name}: {msgid}")
    assert not missing, missing


def test_viewer_sees_but_may_not_act(staff_app: StaffApp) -> None:
    viewer = Staff(staff_app, "xem")
    page = viewer.client.get("/staff/stocktake")
    assert "Không có đợt kiểm kê nào đang mở." in text(page)
    assert 'action="/staff/stocktake/start"' not in page.text
    refused = viewer.post("/staff/stocktake/start", name="Kiểm kê 2027")
    assert refused.status_code == 403
    assert viewer.client.get("/staff/weeding").status_code == 200
    assert viewer.post("/staff/weeding/confirm", decision_no="1", decided_on="2026-11-20",
                       reason="lost", codes="TK.00001").status_code == 403
    with staff_app.context.sessions() as session:
        assert session.scalars(select(Stocktake)).first() is None
        assert session.scalars(select(Withdrawal)).first() is None


def test_a_post_without_the_csrf_token_is_refused(staff_app: StaffApp) -> None:
    librarian = Staff(staff_app)
    refused = librarian.client.post("/staff/stocktake/start", data={"name": "Kiểm kê 2027"})
    assert refused.status_code == 403
    assert librarian.client.get("/staff/stocktake").text.count('action="/staff/stocktake/start"') == 1


def test_stocktake_start_scan_progress_and_close(staff_app: StaffApp) -> None:
    _shelve(staff_app)
    librarian = Staff(staff_app)
    started = librarian.post("/staff/stocktake/start", name="Kiểm kê năm học 2026-2027")
    assert started.status_code == 200
    assert "Đã bắt đầu đợt kiểm kê số 1." in text(started)
    again = librarian.post("/staff/stocktake/start", name="Lần hai")
    assert again.status_code == 409 and "đang mở" in text(again)

    # A barcode, an ĐKCB typed in lower case, a copy of Giá B scanned on Giá A, a stray code.
    scanned = librarian.post("/staff/stocktake/scan", shelf="Giá A",
                             codes="TN00001\ntn.00002 TK.00001 XX-404")
    words = text(scanned)
    assert scanned.status_code == 200
    assert "Đã kiểm 3, đã kiểm trước đó 0, mã lạ 1." in words
    assert "TN.00001 «Dế Mèn phiêu lưu ký»: đã kiểm." in words
    assert "Xếp nhầm giá: thuộc giá Giá B." in words
    assert "XX-404: không có bản sách nào mang mã này." in words
    assert 'value="Giá A"' in scanned.text   # the shelf stays for the next scan
    # Progress: Giá A has the 4 TN copies, Giá B the 5 others.
    assert re.search(r"Giá A 4 2 2 Giá B 5 1 4 Tất cả các giá 9 3 6", words), words
    repeat = librarian.post("/staff/stocktake/scan", shelf="Giá A", codes="TN.00001")
    assert "Đã kiểm 0, đã kiểm trước đó 1, mã lạ 0." in text(repeat)

    missing = librarian.client.get("/staff/stocktake/missing?number=1")
    assert "Không thấy trong đợt kiểm kê số 1: 6 bản." in text(missing)
    assert "/staff/reports/stocktake-missing.pdf?stocktake=1" in missing.text

    unconfirmed = librarian.post("/staff/stocktake/close", mark_missing="yes")
    assert unconfirmed.status_code == 400 and "Đã kiểm xong mọi giá" in text(unconfirmed)
    closed = librarian.post("/staff/stocktake/close", confirm="yes")
    words = text(closed)
    assert "Đã kết thúc đợt kiểm kê số 1." in words
    # Past stocktakes: total 9, present 3, missing 6, on loan 0, misplaced 1, value 6 x 45.000
    # but the reference copy has no price: 5 x 45.000.
    assert re.search(r"Kiểm kê năm học 2026-2027 \S+ \S+ 9 3 6 0 1 225\.000", words), words
    assert "Không có đợt kiểm kê nào đang mở." in words
    with staff_app.context.sessions() as session:
        stored = session.scalars(select(Stocktake)).one()
        assert stored.closed_by == "thuthu" and stored.result["missing"] == 6
        assert session.scalars(select(Copy.status).where(Copy.accession_number == "NV.00001")).one() \
            == CopyStatus.AVAILABLE


def test_weeding_preview_ten_percent_and_confirm(staff_app: StaffApp) -> None:
    librarian = Staff(staff_app)
    form = {"decision_no": "12/QĐ-THCS", "decided_on": "2026-11-20", "reason": "worn",
            "codes": "TK.00001\nTK00002", "note": "Sách rách"}
    preview = librarian.post("/staff/weeding/preview", **form)
    words = text(preview)
    assert preview.status_code == 200
    assert "Có thể thanh lý 2 bản, trị giá 90.000 đ: 22.2% vốn sách hiện có (9 bản)." in words
    assert "Đợt này vượt quá 10% vốn sách." in words and 'name="allow_over"' in preview.text

    refused = librarian.post("/staff/weeding/confirm", **form)
    assert refused.status_code == 409 and "quá 10%" in text(refused)
    with staff_app.context.sessions() as session:
        assert session.scalars(select(Withdrawal)).first() is None

    done = librarian.post("/staff/weeding/confirm", **form, allow_over="yes")
    words = text(done)
    assert done.status_code == 200
    assert "Đã thanh lý 2 bản theo quyết định 12/QĐ-THCS (số thứ tự 1 trong phần II)." in words
    assert "/staff/reports/weeding-list.pdf?decision=1" in done.text
    assert re.search(r"1 12/QĐ-THCS 20/11/2026 2 90\.000 Sách rách", words), words
    with staff_app.context.sessions() as session:
        copies = session.scalars(select(Copy).where(Copy.accession_number.in_(
            ["TK.00001", "TK.00002"]))).all()
    assert [(c.status, c.withdrawal_reason) for c in copies] == [("withdrawn", "worn")] * 2

    twice = librarian.post("/staff/weeding/preview", **{**form, "codes": "TK.00001 NOPE"})
    words = text(twice)
    assert "TK.00001: đã thanh lý trước đây." in words
    assert "NOPE: không có bản sách nào mang mã này." in words
    assert 'action="/staff/weeding/confirm"' not in twice.text
