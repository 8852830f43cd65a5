"""The sample school library of the server tests: its readers, copies, rules and clock.

A plain module (not conftest) so that test modules can import its names.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

import protocol
from protocol.models import ARGS_BY_OP
from clocks import WallClock
from server.config import (
    CalendarConfig,
    CirculationConfig,
    ClosedPeriod,
    LoanPolicy,
    SchoolYear,
    ServerConfig,
)
from server.models import Copy, CopyStatus, LedgerEntry, Loan, Reader, ReaderStatus, Title
from server.pins import hash_pin

SITE_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")

# The readers of the sample library (Reader.code), with what else identifies them.
AN = "HS-2024-0153"          # student, 6A1, MOET id, NFC card, PIN 2468
AN_MOET_ID = "0123456789"
AN_CARD_UID = "04A1B2C3D4E5F6"
AN_PIN = "2468"
BINH = "HS-2024-0154"        # student, 7A2
HOA = "GV-0007"              # teacher
BLOCKED = "HS-2023-0099"     # student blocked by the librarian
BLOCK_REASON = "Làm mất sách chưa bồi thường"
INACTIVE = "HS-2019-0001"    # student who has left the school

# Copies: TN children's, GK textbooks, TK reference books, NV teachers' books.
TN = [f"TN.{n:05d}" for n in range(1, 6)]
GK = [f"GK.{n:05d}" for n in range(1, 4)]
TK = [f"TK.{n:05d}" for n in range(1, 5)]
NV = "NV.00001"
TK_REFERENCE = "TK.00099"    # đọc tại chỗ
TK_LOST = "TK.00098"
TN1_BARCODE = "8935000000011"
TN2_RFID = "E0040150A1B2C3D4"


def local(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=SITE_ZONE)


def school_calendar() -> CalendarConfig:
    return CalendarConfig(
        holidays=[dt.date(2026, 9, 2), dt.date(2027, 1, 1), dt.date(2027, 4, 30),
                  dt.date(2027, 5, 1)],
        closed_periods=[
            ClosedPeriod(name="Tết Nguyên đán", start=dt.date(2027, 2, 5),
                         end=dt.date(2027, 2, 11)),
            ClosedPeriod(name="Nghỉ hè", start=dt.date(2027, 6, 1), end=dt.date(2027, 8, 31)),
        ],
        school_year=SchoolYear(start=dt.date(2026, 9, 5), end=dt.date(2027, 5, 31)),
    )


def make_config(language: str = "vi", **circulation: Any) -> ServerConfig:
    rules: dict[str, Any] = {
        "policy": [
            LoanPolicy(reader_kind="student", item_kind="GK", loan_days=7, max_items=10,
                       renewals=0, long_loan=True),
            # 6 days from a Monday is a Sunday: the desk is closed, so it is due Monday.
            LoanPolicy(reader_kind="student", item_kind="TK", loan_days=6, max_items=2,
                       renewals=1),
            LoanPolicy(reader_kind="student", item_kind="TN", loan_days=7, max_items=3,
                       renewals=2),
            LoanPolicy(reader_kind="teacher", item_kind="GK", loan_days=7, max_items=20,
                       renewals=0, long_loan=True),
            LoanPolicy(reader_kind="teacher", item_kind="TK", loan_days=14, max_items=5,
                       renewals=2),
            LoanPolicy(reader_kind="teacher", item_kind="NV", loan_days=30, max_items=5,
                       renewals=2),
            LoanPolicy(reader_kind="teacher", item_kind="TN", loan_days=14, max_items=5,
                       renewals=2),
        ],
        "max_loans": {"student": 3, "teacher": 10, "staff": 5},
        "block_overdue_after_days": 0,
    }
    rules.update(circulation)
    return ServerConfig(site="thcs-nhut-tao", school_name="Trường THCS Nhựt Tảo",
                        language=language, circulation=CirculationConfig(**rules),
                        calendar=school_calendar())


@dataclass
class Library:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    def count(self, model: type[Any]) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0

    def copy_status(self, accession_number: str) -> str:
        with self.sessions() as session:
            return session.scalars(select(Copy.status).where(
                Copy.accession_number == accession_number)).one()

    def loan(self, accession_number: str) -> Loan | None:
        with self.sessions() as session:
            return session.scalars(select(Loan).join(Copy, Copy.id == Loan.copy_id).where(
                Copy.accession_number == accession_number)).one_or_none()

    def ledger(self) -> list[LedgerEntry]:
        with self.sessions() as session:
            return list(session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))

    def set_reader_status(self, code: str, status: ReaderStatus) -> None:
        with self.sessions.begin() as session:
            session.scalars(select(Reader).where(Reader.code == code)).one().status = status


def seed(sessions: sessionmaker[Session]) -> None:
    created = local(2026, 9, 1)
    with sessions.begin() as session:
        session.add_all([
            Reader(code=AN, moet_id=AN_MOET_ID, card_uid=AN_CARD_UID, name="Nguyễn Văn An",
                   kind="student", class_name="6A1", grade=6, pin_hash=hash_pin(AN_PIN),
                   created_at=created),
            Reader(code=BINH, moet_id="0123456790", name="Trần Thị Bình", kind="student",
                   class_name="7A2", grade=7, created_at=created),
            Reader(code=HOA, name="Lê Thị Hoa", kind="teacher", created_at=created),
            Reader(code=BLOCKED, name="Phạm Minh Châu", kind="student", class_name="8A3",
                   status=ReaderStatus.BLOCKED, block_reason=BLOCK_REASON, created_at=created),
            Reader(code=INACTIVE, name="Võ Thành Đạt", kind="student",
                   status=ReaderStatus.INACTIVE, created_at=created),
        ])
        de_men = Title(title="Dế Mèn phiêu lưu ký", author="Tô Hoài")
        toan = Title(title="Toán 6 tập một")
        de_thi = Title(title="Tuyển tập đề thi Toán 6")
        nghiep_vu = Title(title="Phương pháp dạy học tích cực")
        tu_dien = Title(title="Từ điển Tiếng Việt")
        session.add_all([de_men, toan, de_thi, nghiep_vu, tu_dien])
        for number, accession in enumerate(TN, start=1):
            session.add(Copy(title=de_men, accession_number=accession, kind="TN",
                             barcode=TN1_BARCODE if number == 1 else None,
                             rfid_item_id=TN2_RFID if number == 2 else None))
        for accession in GK:
            session.add(Copy(title=toan, accession_number=accession, kind="GK"))
        for accession in TK:
            session.add(Copy(title=de_thi, accession_number=accession, kind="TK"))
        session.add(Copy(title=nghiep_vu, accession_number=NV, kind="NV"))
        session.add(Copy(title=tu_dien, accession_number=TK_REFERENCE, kind="TK",
                         status=CopyStatus.REFERENCE))
        session.add(Copy(title=de_thi, accession_number=TK_LOST, kind="TK",
                         status=CopyStatus.LOST))


def make_request(op: protocol.Op | str, at: dt.datetime, request_id: str | None = None,
                 offline: bool = False, **args: Any) -> protocol.Request:
    op = protocol.Op(op)
    return protocol.Request(id=request_id or str(uuid.uuid4()), op=op, at=at,
                            offline=offline, args=ARGS_BY_OP[op](**args))
