"""A small library for the end-to-end tests: its config, its clock and its data."""

from __future__ import annotations

import datetime as dt

from protocol.configfile import MqttConfig
from clocks import WallClock
from server import db
from server import stations as registry
from server.config import (
    CalendarConfig,
    CirculationConfig,
    ClosedPeriod,
    DatabaseConfig,
    LoanPolicy,
    SchoolYear,
    ServerConfig,
)
from server.models import Copy, CopyStatus, Reader, ReaderStatus, Title

VN = dt.timezone(dt.timedelta(hours=7))
# Saturday 21 November 2026, 09:00 in Hà Nội: the suite's "now" unless a test moves it.
START = dt.datetime(2026, 11, 21, 9, 0, tzinfo=VN)

# The stations the suite's tests run, registered in every library (the server serves
# registered stations only); `Library.station(name, kind)` registers any other.
STATIONS: tuple[tuple[str, str], ...] = (
    *((f"kiosk-{n}", "kiosk") for n in (*range(1, 10), "a", "b", "rfid")),
    *((f"gate-{n}", "gate") for n in range(1, 10)),
    *((f"returnbox-{n}", "returnbox") for n in range(1, 4)),
    ("hand", "kiosk"), ("junk", "kiosk"),  # raw MQTT clients playing a kiosk
    *((f"desk-{n}", "desk") for n in range(1, 4)),
)


def library_config(site: str, url: str, port: int) -> ServerConfig:
    return ServerConfig(
        site=site,
        school_name="Trường THCS Thử nghiệm",
        database=DatabaseConfig(url=url),
        mqtt=MqttConfig(host="127.0.0.1", port=port),
        circulation=CirculationConfig(
            max_loans={"student": 3, "teacher": 10, "staff": 3},
            block_overdue_after_days=0,
            policy=[
                # 8 days from Saturday 21/11 is Sunday 29/11, closed: due Tuesday 1/12
                # because Monday 30/11 is a holiday in this calendar.
                LoanPolicy(reader_kind="student", item_kind="TN", loan_days=8, max_items=2, renewals=1),
                LoanPolicy(reader_kind="student", item_kind="TK", loan_days=3, max_items=1, renewals=0),
                LoanPolicy(reader_kind="student", item_kind="GK", max_items=10, renewals=0, long_loan=True),
                LoanPolicy(reader_kind="teacher", item_kind="TN", loan_days=14, max_items=5, renewals=2),
                LoanPolicy(reader_kind="teacher", item_kind="NV", loan_days=30, max_items=5, renewals=2),
            ],
        ),
        calendar=CalendarConfig(
            closed_weekdays=["sunday"],
            holidays=[dt.date(2026, 11, 30), dt.date(2027, 1, 1)],
            closed_periods=[ClosedPeriod(name="Nghỉ hè", start=dt.date(2027, 6, 1),
                                         end=dt.date(2027, 8, 31))],
            school_year=SchoolYear(start=dt.date(2026, 9, 5), end=dt.date(2027, 5, 31)),
        ),
    )


def fill(url: str) -> None:
    engine = db.make_engine(url)
    created = START.astimezone(dt.timezone.utc)
    with db.session_factory(engine).begin() as session:
        session.add_all([
            Reader(code="HS-2025-0001", moet_id="7901234561", card_uid="04A1B2C3", name="Nguyễn Văn An",
                   kind="student", class_name="6A1", grade=6, created_at=created),
            Reader(code="HS-2025-0002", moet_id="7901234562", name="Trần Thị Bình",
                   kind="student", class_name="6A1", grade=6, created_at=created),
            Reader(code="HS-2025-0003", name="Lê Minh Châu", kind="student", class_name="7A2", grade=7,
                   status=ReaderStatus.BLOCKED, block_reason="Làm mất sách chưa bồi thường",
                   created_at=created),
            Reader(code="GV-0001", name="Phạm Thu Hà", kind="teacher", created_at=created),
        ])
        de_men = Title(title="Dế Mèn phiêu lưu ký", author="Tô Hoài", publisher="NXB Kim Đồng")
        dictionary = Title(title="Từ điển Tiếng Việt", author="Hoàng Phê")
        maths = Title(title="Toán 6 – Tập một", author="Hà Huy Khoái")
        guide = Title(title="Sách giáo viên Toán 6", author="Hà Huy Khoái")
        session.add_all([de_men, dictionary, maths, guide])
        session.flush()
        copies = [
            (de_men, "TN", 1), (de_men, "TN", 2), (de_men, "TN", 3), (de_men, "TN", 4),
            (dictionary, "TK", 1), (dictionary, "TK", 2),
            (maths, "GK", 1), (guide, "NV", 1),
        ]
        for title, kind, number in copies:
            session.add(Copy(title_id=title.id, kind=kind, accession_number=f"{kind}.{number:05d}",
                             barcode=f"{kind}{number:05d}", price=45000))
        session.add(Copy(title_id=dictionary.id, kind="TK", accession_number="TK.00003",
                         barcode="TK00003", status=CopyStatus.REFERENCE))
    for name, kind in STATIONS:
        registry.register(engine, name, kind, now=created)
    engine.dispose()
