"""The records pages over HTTP: the report list and downloads (PDF read back with
pdftotext, Excel with openpyxl, JSON), intake upload -> preview -> confirm on a real
SQLite file, label sheets and library cards; roles and CSRF on every POST."""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from PIL import Image
from pyzbar.pyzbar import decode
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from server.config import ServerConfig
from server.models import Copy, Receipt
from server.reports import registry
from server.reports.document import Column, Report, Table, Text
from server.reports.period import school_year
from server.reports.registry import ReportParams, all_reports, report
from server.web.app import build_app
from server.web.auth import Auth
from server.web.context import TEMPLATES
from server.web.i18n import STAFF_VI
from server.web.records import RECORDS_VI, RecordsPages, UploadStore
from web_fixtures import StaffApp

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_TOKEN = re.compile(r'name="token" value="([^"]+)"')
_ERROR = re.compile(r'id="records-error"[^>]*>([^<]*)<')

TEST_REPORT = "test-copies-by-kind"
TEST_TITLE = Text("THỐNG KÊ BẢN SÁCH THEO LOẠI (THỬ)", "COPIES BY KIND (TEST)")


# --- a report declared the way builder modules declare theirs ----------------------------

def copies_by_kind(sessions: sessionmaker[Session], config: ServerConfig,
                   params: ReportParams) -> Report:
    kind = params.options.get("kind")
    if kind and config.library.kind(kind) is None:
        raise ValueError(f"Không có loại sách {kind} / no kind {kind}")
    query = select(Copy.kind, func.count()).group_by(Copy.kind).order_by(Copy.kind)
    if kind:
        query = query.where(Copy.kind == kind)
    with sessions() as db:
        rows = [list(row) for row in db.execute(query)]
    year = school_year(config, params.school_year)
    return Report(name=TEST_REPORT, title=TEST_TITLE, school=config.school_name,
                  subtitle=Text(f"Năm học {year.label}", f"School year {year.label}"),
                  sections=[Table(None, [Column("kind", Text("Loại", "Kind")),
                                         Column("copies", Text("Số bản", "Copies"), kind="int",
                                                align="right")], rows)])


def copies_snapshot(sessions: sessionmaker[Session], config: ServerConfig,
                    params: ReportParams) -> dict[str, Any]:
    built = copies_by_kind(sessions, config, params)
    return {"copies": {kind: n for kind, n in built.tables()[0].rows}}


@pytest.fixture
def test_report(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # Declared into a copy of the registry, so no other test sees it.
    monkeypatch.setattr(registry, "_REPORTS", dict(registry._REPORTS))
    report(TEST_REPORT, TEST_TITLE, Text("Thử nghiệm", "Tests"), formats=("pdf", "xlsx", "json"),
           snapshot=copies_snapshot)(copies_by_kind)
    yield TEST_REPORT


# --- a signed-in browser on the staff web with the records pages ---------------------------

class Browser:
    def __init__(self, app: StaffApp, tmp_path: Path, name: str) -> None:
        web = build_app(app.context)
        if not any(getattr(route, "path", None) == "/staff/reports" for route in web.routes):
            # Until build_app mounts RecordsPages itself, mount them as it will.
            pages = RecordsPages(app.context, Auth(app.context), UploadStore(tmp_path / "uploads"))
            web.router.routes[:0] = pages.routes()
        self.client = TestClient(web, follow_redirects=False, client=("10.0.0.5", 50000))
        assert app.login(self.client, name).status_code == 303
        page = self.client.get("/staff/today")
        self.csrf = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params=params)

    def post(self, path: str, data: dict[str, Any], files: Any = None) -> Any:
        return self.client.post(path, data={"csrf_token": self.csrf, **data}, files=files)


@pytest.fixture
def librarian(staff_app: StaffApp, tmp_path: Path) -> Browser:
    return Browser(staff_app, tmp_path, "thuthu")


@pytest.fixture
def viewer(staff_app: StaffApp, tmp_path: Path) -> Browser:
    return Browser(staff_app, tmp_path, "xem")


def pdf_text(data: bytes, tmp_path: Path) -> str:
    assert data.startswith(b"%PDF"), data[:100]
    path = tmp_path / "out.pdf"
    path.write_bytes(data)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout
    return " ".join(text.split())


def filename(response: Any) -> str:
    found = re.search(r'filename="([^"]+)"', response.headers["content-disposition"])
    assert found, response.headers
    return found.group(1)


def refusal(response: Any) -> str:
    found = _ERROR.search(response.text)
    assert found, response.text[:3000]
    return html.unescape(found.group(1))


def copies(app: StaffApp) -> int:
    with app.context.sessions() as db:
        return db.scalar(select(func.count()).select_from(Copy)) or 0


# --- reports ----------------------------------------------------------------------------

def test_the_list_shows_every_registered_report_with_its_formats(viewer: Browser,
                                                                  test_report: str) -> None:
    page = viewer.get("/staff/reports")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    text = html.unescape(page.text)
    specs = all_reports()
    assert TEST_REPORT in specs
    for spec in specs.values():
        assert spec.title.vi in text and spec.group.vi in text
        for fmt in spec.formats:
            assert f'href="/staff/reports/{spec.name}.{fmt}"' in page.text
    # The school years to choose from: this one (the clock says November 2026) and four before.
    assert re.findall(r'<option value="(\d{4})"', page.text)[:5] == ["2026", "2025", "2024", "2023", "2022"]
    assert "<script" not in page.text


def test_a_pdf_download_is_the_report_with_a_folded_file_name(viewer: Browser, tmp_path: Path,
                                                              test_report: str) -> None:
    response = viewer.get(f"/staff/reports/{TEST_REPORT}.pdf", year="2025")
    assert response.status_code == 200, response.text[:2000]
    assert response.headers["content-type"] == "application/pdf"
    assert filename(response) == "thong-ke-ban-sach-theo-loai-thu-2025-2026.pdf"
    text = pdf_text(response.content, tmp_path)
    assert TEST_TITLE.vi in text and "Trường THCS Thử nghiệm" in text
    assert "Năm học 2025-2026" in text and re.search(r"TN\s+4\b", text), text

    viewer.client.cookies.set("lang", "en")
    english = viewer.get(f"/staff/reports/{TEST_REPORT}.pdf")
    assert english.status_code == 200
    assert TEST_TITLE.en in pdf_text(english.content, tmp_path)


def test_an_excel_download_opens_with_the_numbers(viewer: Browser, test_report: str) -> None:
    response = viewer.get(f"/staff/reports/{TEST_REPORT}.xlsx", kind="TK")
    assert response.status_code == 200, response.text[:2000]
    assert filename(response) == "thong-ke-ban-sach-theo-loai-thu-tk-2026-2027.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows(values_only=True)
             for cell in row if cell is not None]
    assert TEST_TITLE.vi in cells
    # Only the kind asked for, and the count is a number: 3 TK copies in the test library.
    assert "TK" in cells and "TN" not in cells and 3 in cells


def test_json_is_the_reports_snapshot(viewer: Browser, test_report: str) -> None:
    response = viewer.get(f"/staff/reports/{TEST_REPORT}.json", options="kind=TN")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert json.loads(response.content) == {"copies": {"TN": 4}}


BAD_REPORT_PARAMS: list[tuple[dict[str, str], str]] = [
    ({"year": "20x6"}, "Không có năm học 20x6."),
    ({"year": "1850"}, "Không có năm học 1850."),
    ({"since": "31/02/2026"}, "“31/02/2026” không phải là ngày"),
    ({"since": "2026-12-01", "until": "2026-11-01"}, "Ngày bắt đầu sau ngày kết thúc."),
    ({"options": "kind"}, "“kind” không phải là tuỳ chọn"),
    ({"options": "answers=/etc/passwd"}, "Tuỳ chọn “answers” chỉ dùng được trên dòng lệnh."),
    ({"kind": "XX"}, "Không có loại sách XX / no kind XX"),
]


def test_bad_parameters_get_a_400_page_that_says_why(viewer: Browser, test_report: str) -> None:
    for params, message in BAD_REPORT_PARAMS:
        response = viewer.get(f"/staff/reports/{TEST_REPORT}.pdf", **params)
        assert response.status_code == 400, params
        assert message in refusal(response), params


def test_unknown_reports_and_formats_are_not_found(viewer: Browser, test_report: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert viewer.get("/staff/reports/no-such-report.pdf").status_code == 404
    assert viewer.get(f"/staff/reports/{TEST_REPORT}.docx").status_code == 404
    report("test-pdf-only", Text("CHỈ PDF", "PDF ONLY"), Text("Thử nghiệm", "Tests"),
           formats=("pdf", "json"))(copies_by_kind)  # json without a snapshot is not offered
    assert viewer.get("/staff/reports/test-pdf-only.json").status_code == 404
    assert viewer.get("/staff/reports/test-pdf-only.xlsx").status_code == 404
    assert viewer.get("/staff/reports/test-pdf-only.pdf").status_code == 200


# Reports about a stocktake or a weeding decision the test library has not had: they may
# refuse, but with their own bilingual message on the 400 page.
NEEDS_DATA = {"stocktake-missing", "weeding-list"}


def test_every_registered_report_downloads_in_each_format(librarian: Browser, tmp_path: Path,
                                                          test_report: str) -> None:
    for spec in all_reports().values():
        for fmt in spec.formats:
            response = librarian.get(f"/staff/reports/{spec.name}.{fmt}")
            if spec.name in NEEDS_DATA and response.status_code == 400:
                assert " / " in refusal(response), (spec.name, response.text[:2000])
                continue
            assert response.status_code == 200, (spec.name, fmt, response.text[:2000])
            assert filename(response).endswith(f".{fmt}") and filename(response).isascii()
            if fmt == "pdf":
                title = " ".join(spec.title.vi.split())
                # Registers print their title in capitals, as the paper forms do.
                assert title.casefold() in pdf_text(response.content, tmp_path).casefold(), spec.name
            elif fmt == "xlsx":
                assert openpyxl.load_workbook(io.BytesIO(response.content)).worksheets
            else:
                assert isinstance(json.loads(response.content), dict)


# --- roles and CSRF ---------------------------------------------------------------------

def test_signed_out_visitors_go_to_the_login(staff_app: StaffApp, tmp_path: Path,
                                             test_report: str) -> None:
    browser = Browser(staff_app, tmp_path, "thuthu")
    anonymous = browser.client
    anonymous.cookies.clear()
    for path in ("/staff/reports", f"/staff/reports/{TEST_REPORT}.pdf", "/staff/intake",
                 "/staff/labels", "/staff/cards", "/staff/labels/sheet.pdf?kind=TN"):
        response = anonymous.get(path)
        assert response.status_code == 303 and "/staff/login" in response.headers["location"]


def test_a_viewer_downloads_reports_but_may_not_take_in_books(staff_app: StaffApp, viewer: Browser,
                                                              test_report: str) -> None:
    assert viewer.get(f"/staff/reports/{TEST_REPORT}.pdf").status_code == 200
    for path in ("/staff/intake", "/staff/labels", "/staff/cards",
                 "/staff/labels/sheet.pdf?kind=TN", "/staff/cards/cards.pdf?class=6A1"):
        assert viewer.get(path).status_code == 403, path
    before = copies(staff_app)
    refused = viewer.post("/staff/intake/preview", receipt_header(),
                          files={"file": ("phieu.csv", receipt_csv(), "text/csv")})
    assert refused.status_code == 403
    assert copies(staff_app) == before


def test_intake_posts_without_the_sessions_csrf_token_are_refused(staff_app: StaffApp,
                                                                  librarian: Browser) -> None:
    before = copies(staff_app)
    for token in ("", "forged"):
        response = librarian.client.post("/staff/intake/preview",
                                         data={**receipt_header(), "csrf_token": token},
                                         files={"file": ("phieu.csv", receipt_csv(), "text/csv")})
        assert response.status_code == 403
    preview = librarian.post("/staff/intake/preview", receipt_header(),
                             files={"file": ("phieu.csv", receipt_csv(), "text/csv")})
    token = _TOKEN.search(preview.text).group(1)  # type: ignore[union-attr]
    forged = librarian.client.post("/staff/intake/confirm", data={
        **receipt_header(), "token": token, "csrf_token": "forged"})
    assert forged.status_code == 403
    assert copies(staff_app) == before


# --- intake -------------------------------------------------------------------------------

def receipt_header(**changes: str) -> dict[str, str]:
    return {"receipt_no": "PN-07/2026", "received_on": "2026-11-20", "source": "district",
            "source_detail": "Phòng GD&ĐT", "note": "Đợt 2", **changes}


def receipt_csv(*rows: str) -> bytes:
    lines = ["PHIẾU NHẬP SÁCH", "Số: PN-07/2026", "",
             "STT,Nhan đề,Tác giả,Loại,Số lượng,Đơn giá",
             *(rows or ("1,Tuổi thơ dữ dội,Phùng Quán,TN,3,85.000",
                        "2,Từ điển Chính tả,Hoàng Phê,TK,2,120000"))]
    return ("\n".join(lines) + "\n").encode("utf-8")


def receipt_xlsx() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["SỞ GD&ĐT", None, None])
    sheet.append(["PHIẾU NHẬP SÁCH"])
    sheet.append([])
    sheet.append(["Nhan đề", "Tác giả", "Loại", "Số lượng", "Đơn giá"])
    sheet.append(["Tuổi thơ dữ dội", "Phùng Quán", "TN", 3, 85000])
    sheet.append(["Từ điển Chính tả", "Hoàng Phê", "TK", 2, 120000])
    sheet.append(["Tổng cộng", None, None, 5, None])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_upload_preview_confirm_creates_the_copies(staff_app: StaffApp, librarian: Browser,
                                                   tmp_path: Path) -> None:
    before = copies(staff_app)
    assert librarian.get("/staff/intake").status_code == 200
    preview = librarian.post("/staff/intake/preview", receipt_header(), files={
        "file": ("phieu-nhap.xlsx", receipt_xlsx(),
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")})
    assert preview.status_code == 200, preview.text[:3000]
    text = html.unescape(preview.text)
    assert "Tuổi thơ dữ dội" in text and "Từ điển Chính tả" in text
    assert re.search(r'id="receipt-copies">5<', preview.text)
    assert "495.000" in text  # 3 x 85.000 + 2 x 120.000
    assert copies(staff_app) == before  # a preview writes nothing

    token = _TOKEN.search(preview.text).group(1)  # type: ignore[union-attr]
    confirmed = librarian.post("/staff/intake/confirm", {**receipt_header(), "token": token})
    assert confirmed.status_code == 303, confirmed.text[:3000]
    assert confirmed.headers["location"].startswith("/staff/intake/1")
    assert copies(staff_app) == before + 5

    page = librarian.get(confirmed.headers["location"])
    assert page.status_code == 200
    text = html.unescape(page.text)
    # The test library had TN.00001-4 and TK.00001-3: numbering runs on from there.
    assert "TN.00005–TN.00007" in text and "TK.00004–TK.00005" in text
    assert 'href="/staff/labels?receipt=1"' in page.text
    with staff_app.context.sessions() as db:
        receipt = db.scalars(select(Receipt)).one()
        assert (receipt.receipt_no, receipt.source, receipt.created_by) == ("PN-07/2026", "district", "thuthu")
        assert db.scalar(select(func.count()).select_from(Copy)
                         .where(Copy.receipt_id == receipt.id)) == 5

    listing = html.unescape(librarian.get("/staff/intake").text)
    assert "PN-07/2026" in listing and "PGD cấp phát" in listing and "495.000" in listing

    # The same confirm again (a reload, a double click) finds its file gone: nothing twice.
    again = librarian.post("/staff/intake/confirm", {**receipt_header(), "token": token})
    assert again.status_code == 400
    assert "Tệp đã tải lên không còn nữa" in refusal(again)
    assert copies(staff_app) == before + 5

    # "In nhãn": the labels form prefilled with the receipt prints its five labels.
    form = librarian.get("/staff/labels", receipt="1")
    assert 'name="receipt" inputmode="numeric" maxlength="10" value="1"' in form.text
    sheet = librarian.get("/staff/labels/sheet.pdf", receipt="1")
    assert sheet.status_code == 200 and filename(sheet) == "nhan-sach-phieu-nhap-1.pdf"
    labels = pdf_text(sheet.content, tmp_path)
    for number in ("TN.00005", "TN.00006", "TN.00007", "TK.00004", "TK.00005"):
        assert number in labels
    assert "TN.00004" not in labels


def test_bad_rows_are_listed_and_nothing_is_saved(staff_app: StaffApp, librarian: Browser) -> None:
    before = copies(staff_app)
    response = librarian.post("/staff/intake/preview", receipt_header(), files={
        "file": ("phieu.csv", receipt_csv("1,Tuổi thơ dữ dội,Phùng Quán,TN,ba,85000",
                                          "2,Sách lạ,Ai đó,XX,1,1000",
                                          "3,Từ điển Chính tả,Hoàng Phê,TK,2,120000"), "text/csv")})
    assert response.status_code == 400
    text = html.unescape(response.text)
    assert "Tệp phiếu nhập có 2 hàng lỗi" in text
    assert re.search(r"Hàng 5: số lượng không đọc được «ba»", text), text
    assert re.search(r"Hàng 6: loại ĐKCB «XX»", text), text
    assert 'action="/staff/intake/confirm"' not in response.text  # nothing to confirm
    assert copies(staff_app) == before


BAD_HEADERS: list[tuple[dict[str, str], str, str]] = [
    ({"receipt_no": ""}, "phieu.csv", "Hãy ghi số phiếu nhập"),
    ({"received_on": "hôm qua"}, "phieu.csv", "“hôm qua” không phải là ngày"),
    ({"source": "stolen"}, "phieu.csv", "Hãy chọn nguồn cấp."),
    ({}, "phieu.pdf", "Hãy chọn tệp phiếu nhập Excel (.xlsx) hoặc CSV (.csv)."),
]


def test_a_bad_receipt_header_or_file_type_is_refused(staff_app: StaffApp, librarian: Browser) -> None:
    before = copies(staff_app)
    for changes, name, message in BAD_HEADERS:
        response = librarian.post("/staff/intake/preview", receipt_header(**changes),
                                  files={"file": (name, receipt_csv(), "text/csv")})
        assert response.status_code == 400, changes
        assert message in refusal(response), changes
    assert copies(staff_app) == before


def test_a_confirm_with_a_made_up_token_saves_nothing(staff_app: StaffApp, librarian: Browser) -> None:
    before = copies(staff_app)
    for token in ("../../etc/passwd", "A" * 32):
        response = librarian.post("/staff/intake/confirm", {**receipt_header(), "token": token})
        assert response.status_code == 400
        assert "Tệp đã tải lên không còn nữa" in refusal(response)
    assert copies(staff_app) == before
    assert librarian.get("/staff/intake/99").status_code == 404


# --- labels and cards -------------------------------------------------------------------

def test_a_label_sheet_for_a_kind_and_range(librarian: Browser, tmp_path: Path) -> None:
    form = librarian.get("/staff/labels")
    assert form.status_code == 200 and 'value="3x8"' in form.text and 'value="4x10"' in form.text
    response = librarian.get("/staff/labels/sheet.pdf", kind="TN", first="TN.00002",
                             last="TN.00003", layout="4x10", skip="5")
    assert response.status_code == 200, response.text[:2000]
    assert filename(response) == "nhan-sach-tn-tn-00002-tn-00003.pdf"
    text = pdf_text(response.content, tmp_path)
    assert "TN.00002" in text and "TN.00003" in text and "TN.00001" not in text

    listed = librarian.get("/staff/labels/sheet.pdf", codes="TK.00002\nGK.00001")
    assert listed.status_code == 200
    text = pdf_text(listed.content, tmp_path)
    assert "TK.00002" in text and "GK.00001" in text


BAD_LABELS: list[tuple[dict[str, str], str]] = [
    ({"codes": "TK.00002\nTK.09999"}, "Không có bản sách với ĐKCB: TK.09999"),
    ({"kind": "TN", "first": "TN.00004", "last": "TN.00001"}, "ĐKCB đầu TN.00004 lớn hơn"),
    ({"kind": "TN", "layout": "9x99"}, "Không có khổ nhãn '9x99'"),
    ({"kind": "TN", "skip": "-1"}, "Số nhãn đã dùng phải là số nguyên từ 0 đến 199."),
    ({"layout": "3x8"}, "Hãy chọn bản sách"),
    ({"receipt": "42"}, "Không có phiếu nhập số 42"),
]


def test_a_wrong_label_choice_shows_the_form_again_with_why(librarian: Browser) -> None:
    for params, message in BAD_LABELS:
        response = librarian.get("/staff/labels/sheet.pdf", **params)
        assert response.status_code == 400, params
        assert response.headers["content-type"].startswith("text/html")
        assert message in refusal(response), params


def test_library_cards_for_a_class_with_a_qr_to_this_server(librarian: Browser, tmp_path: Path) -> None:
    form = librarian.get("/staff/cards")
    assert form.status_code == 200 and '<option value="6A1"' in form.text
    response = librarian.get("/staff/cards/cards.pdf", **{"class": "6A1", "per_page": "cr80"})
    assert response.status_code == 200, response.text[:2000]
    assert filename(response) == "the-thu-vien-6a1.pdf"
    text = pdf_text(response.content, tmp_path)
    assert "Nguyễn Văn An" in text and "Trần Thị Bình" in text and "Phạm Thu Hà" not in text

    (tmp_path / "cards.pdf").write_bytes(response.content)
    subprocess.run(["pdftoppm", "-r", "300", "-f", "1", "-l", "1", "-png",
                    str(tmp_path / "cards.pdf"), str(tmp_path / "card")], check=True)
    image = Image.open(next(tmp_path.glob("card*.png")))
    found = {symbol.type: symbol.data.decode() for symbol in decode(image)}
    # The Starlette test client reaches the server as http://testserver.
    assert found.get("QRCODE", "").startswith("http://testserver/"), found
    assert found.get("CODE128") in ("HS-2025-0001", "HS-2025-0002"), found


BAD_CARDS: list[tuple[dict[str, str], str]] = [
    ({"readers": "HS-2025-0001\nHS-9999"}, "HS-9999"),
    ({"kind": "alien"}, "Không có loại bạn đọc “alien”."),
    ({}, "Hãy chọn bạn đọc"),
    ({"class": "6A1", "per_page": "a3"}, "Hãy chọn in trên giấy A4 hoặc từng thẻ."),
]


def test_a_wrong_card_choice_shows_the_form_again_with_why(librarian: Browser) -> None:
    for params, message in BAD_CARDS:
        response = librarian.get("/staff/cards/cards.pdf", **params)
        assert response.status_code == 400, params
        assert message in refusal(response), params


# --- strings ------------------------------------------------------------------------------

def test_every_records_template_string_has_a_vietnamese_text() -> None:
    call = re.compile(r"""_\(\s*(["'])(.+?)\1""")
    templates = [path for pattern in ("records*.html", "intake*.html", "labels*.html")
                 for path in (TEMPLATES / "staff").glob(pattern)]
    assert len(templates) >= 7
    missing = [f"{path.name}: {msgid}" for path in templates
               for _quote, msgid in call.findall(path.read_text(encoding="utf-8"))
               if msgid not in RECORDS_VI and msgid not in STAFF_VI]
    assert not missing, missing
