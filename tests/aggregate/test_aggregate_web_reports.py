"""The office's report (PDF read back with pdftotext, Excel with openpyxl) and the web
pages, served by a real uvicorn over the sample's PostgreSQL database."""

from __future__ import annotations

import datetime as dt
import io
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine

from server import db
from server.aggregate.ingest import Ingest
from server.aggregate.reports import province_report, render
from server.aggregate.web import AGGREGATE_VI, start_aggregate_web
from server.web import accounts
from server.web.context import TEMPLATES
from server.web.i18n import STAFF_VI, Catalogue

import aggregate_sample as sample
from aggregate_sample import AN_HOI, NOW, YEAR

PASSWORD = "mat-khau-so-gd"


@pytest.fixture
def fed(agg_engine: Engine) -> Engine:
    ingest = Ingest(agg_engine, sample.config(str(agg_engine.url)), clock=lambda: NOW)
    ingest.sync_schools()
    assert ingest.ingest_payloads([(t, p) for t, p, _ in sample.messages()]).malformed == 0
    with db.session_factory(agg_engine).begin() as session:
        accounts.add_user(session, "so-gd", "viewer", PASSWORD, NOW)
    return agg_engine


def _pdf_text(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def _sheet_values(data: bytes) -> list[list[object]]:
    sheet = load_workbook(io.BytesIO(data)).active
    return [[cell for cell in row] for row in sheet.iter_rows(values_only=True)]


def _row(rows: list[list[object]], first: object) -> list[object]:
    return next(row for row in rows if row and row[0] == first)


def test_the_report_on_paper_and_in_a_spreadsheet(fed: Engine, tmp_path: Path) -> None:
    config = sample.config(str(fed.url))
    report = province_report(db.session_factory(fed), YEAR, config, now=NOW)
    text = _pdf_text(render(report, "pdf"), tmp_path)
    assert "BÁO CÁO TỔNG HỢP THƯ VIỆN TRƯỜNG HỌC TOÀN TỈNH" in text and "Năm học 2026-2027" in text
    assert re.search(r"Lượt mượn trong năm học\s+12\b", text)
    assert re.search(r"Bản sách trên học sinh\s+3,60\b", text)
    assert re.search(r"Phường An Hội\s+2\s+2\s+9\s+3\.200\s+700\s+4,00", text), text
    assert "Trường TH-THCS Phú Túc" in text and "chưa gửi tự đánh giá TT16" in text
    assert "Trường Tiểu học Lá (*)" in text and "Nguyễn Văn An" not in text
    rows = _sheet_values(render(report, "xlsx"))
    assert _row(rows, "Lượt mượn trong năm học")[1] == "12"
    assert _row(rows, AN_HOI)[:7] == [AN_HOI, 2, 2, 9, 3200, 700, 4.0]
    assert _row(rows, "Tổng")[:4] == ["Tổng", 4, 2, 12]        # by commune: 4 schools with th-la
    months = [row[:2] for row in rows if row and isinstance(row[0], str) and re.fullmatch(r"\d+/\d{4}", row[0])
              and isinstance(row[1], int)]
    assert months[:12] == [["9/2026", 3], ["10/2026", 3], ["11/2026", 3], ["12/2026", 1], ["1/2027", 1],
                           ["2/2027", 0], ["3/2027", 0], ["4/2027", 0], ["5/2027", 1], ["6/2027", 0],
                           ["7/2027", 0], ["8/2027", 0]]
    english = _pdf_text(render(province_report(db.session_factory(fed), YEAR, config, commune=AN_HOI,
                                               now=NOW), "pdf", "en"), tmp_path)
    assert "School year 2026-2027 · Phường An Hội" in english
    assert re.search(r"Loans in the school year\s+9\b", english) and "By commune" not in english


@pytest.fixture
def web(fed: Engine) -> Iterator[httpx.Client]:
    config = sample.config(str(fed.url))
    handle = start_aggregate_web(config, fed, host="127.0.0.1", port=0, clock=lambda: NOW)
    try:
        with httpx.Client(base_url=handle.url, timeout=30) as client:
            yield client
    finally:
        handle.stop()


def _sign_in(client: httpx.Client) -> None:
    client.get("/staff/login")
    token = client.cookies.get("thuvien_login_csrf")
    response = client.post("/staff/login", data={"name": "so-gd", "password": PASSWORD, "csrf_token": token,
                                                 "next": ""})
    assert response.status_code == 303 and response.headers["location"] == "/staff/stations"


def test_the_pages_need_a_signed_in_account(web: httpx.Client) -> None:
    response = web.get("/staff/aggregate")
    assert response.status_code == 303 and response.headers["location"].startswith("/staff/login")
    assert web.get("/staff/aggregate/report.pdf").status_code == 303


def test_the_pages_show_the_views(web: httpx.Client, tmp_path: Path) -> None:
    _sign_in(web)
    home = web.get("/staff/stations", follow_redirects=True)
    assert home.status_code == 200 and str(home.url).endswith("/staff/aggregate")
    overview = web.get("/staff/aggregate", params={"year": YEAR})
    page = overview.text
    assert "Sở GD&amp;ĐT Tỉnh Bến Tre" in page and "Tổng quan" in page
    assert re.search(r'<dd id="loans">12</dd>', page) and re.search(r'<dd id="copies">4\.100</dd>', page)
    assert re.search(r'<dd id="per-student">3,60</dd>', page)
    assert re.search(r'data-commune="Phường An Hội">.*?class="num loans">9<', page, re.S)
    assert 'data-site="thcs-phu-tuc"' in page and "chưa gửi tự đánh giá TT16" in page
    assert overview.headers["content-security-policy"].startswith("default-src 'self'")

    filtered = web.get("/staff/aggregate", params={"year": YEAR, "commune": AN_HOI}).text
    assert '<dd id="loans">9</dd>' in filtered and 'id="communes"' not in filtered
    primary = web.get("/staff/aggregate/schools", params={"year": YEAR, "level": "primary"}).text
    assert re.findall(r'<tr data-site="([a-z-]+)">', primary) == ["th-an-hoi", "thcs-phu-tuc", "th-la"]
    assert "không có trong danh sách" in primary

    school = web.get("/staff/aggregate/schools/th-an-hoi", params={"year": YEAR}).text
    assert '<dd id="loans">5</dd>' in school and '<dd id="tt16">Mức độ 1</dd>' in school
    assert web.get("/staff/aggregate/schools/nobody").status_code == 404
    ingest = web.get("/staff/aggregate/ingest").text
    assert "Tin nhận được" in ingest and "1.4.0" in ingest

    english = web.get("/lang/en", params={"next": "/staff/aggregate"}, follow_redirects=True)
    assert "Overview" in english.text and "Copies per student" in english.text

    pdf = web.get("/staff/aggregate/report.pdf", params={"year": YEAR, "commune": AN_HOI})
    assert pdf.headers["content-type"] == "application/pdf"
    assert 'filename="tong-hop-2026.pdf"' in pdf.headers["content-disposition"]
    assert "Phường An Hội" in _pdf_text(pdf.content, tmp_path)
    xlsx = web.get("/staff/aggregate/report.xlsx", params={"year": YEAR})
    assert _row(_sheet_values(xlsx.content), AN_HOI)[3] == 9
    assert web.get("/staff/aggregate/report.csv").status_code == 404


def test_every_aggregate_template_string_has_a_vietnamese_text() -> None:
    catalogue = Catalogue(STAFF_VI, AGGREGATE_VI)
    call = re.compile(r"""_\(\s*(["'])(.+?)\1""")
    templates = sorted((TEMPLATES / "aggregate").glob("*.html"))
    assert len(templates) >= 6
    missing = [f"{path.name}: {msgid}" for path in templates
               for _quote, msgid in call.findall(path.read_text(encoding="utf-8")) if msgid not in catalogue]
    assert not missing, missing
    from server.aggregate.web import COUNTER_LABELS

    assert all(label in catalogue for _, label in COUNTER_LABELS)


def test_dates_on_the_pages_are_local(fed: Engine) -> None:
    from server.aggregate.web import aggregate_context

    ctx = aggregate_context(sample.config(str(fed.url)), fed)
    assert ctx.local_time(dt.datetime(2027, 5, 20, 3, 0, tzinfo=dt.UTC)) == "10:00:00 20/05/2027"
