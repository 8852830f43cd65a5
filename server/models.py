"""The library's tables (SQLAlchemy 2): readers, titles, copies, loans, the ledger,
and what stations report: their events, the alerts raised from them, gate visits.

The ledger (`ledger_entries`) is append-only: rows are only ever inserted (database
triggers refuse UPDATE and DELETE, see the first migration). `loans` holds the current
loans, maintained alongside the ledger in the same transaction, so that checks at the
kiosk need no scan of history; its unique `copy_id` is what makes two stations racing
for one copy end with exactly one loan.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[dt.datetime]):
    """An aware datetime stored as UTC: SQLite keeps no offset, so we never rely on one."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ReaderKind(StrEnum):
    STUDENT = "student"   # học sinh
    TEACHER = "teacher"   # giáo viên
    STAFF = "staff"       # cán bộ, nhân viên


class ReaderStatus(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"       # blocked by the librarian, with a reason
    INACTIVE = "inactive"     # left the school or graduated: kept, never deleted


class CopyStatus(StrEnum):
    AVAILABLE = "available"
    ON_LOAN = "on_loan"
    REFERENCE = "reference"   # đọc tại chỗ: read in the library only
    LOST = "lost"
    DAMAGED = "damaged"
    WITHDRAWN = "withdrawn"   # thanh lý


class LedgerOp(StrEnum):
    CHECKOUT = "checkout"
    RETURN = "return"
    RENEW = "renew"


class Reader(Base):
    """Bạn đọc: a student, teacher or staff member who may borrow."""

    __tablename__ = "readers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The number printed on the library card, e.g. HS-2024-0153; the patron id of the protocol.
    code: Mapped[str] = mapped_column(String(64), unique=True)
    # Mã định danh Bộ GD&ĐT: 10 digits for students.
    moet_id: Mapped[str | None] = mapped_column(String(16), unique=True)
    # UID of an NFC/RFID card, upper-case hex as the reader reports it.
    card_uid: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    class_name: Mapped[str | None] = mapped_column(String(32))  # lớp, e.g. 6A1
    grade: Mapped[int | None] = mapped_column(Integer)           # khối, e.g. 6
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=ReaderStatus.ACTIVE)
    block_reason: Mapped[str | None] = mapped_column(String(200))
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_readers_class", "class_name"),)


class Title(Base):
    """Đầu sách: one bibliographic record."""

    __tablename__ = "titles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    author: Mapped[str | None] = mapped_column(String(300))
    publisher: Mapped[str | None] = mapped_column(String(200))
    year: Mapped[int | None] = mapped_column(Integer)
    isbn: Mapped[str | None] = mapped_column(String(17), index=True)
    subject: Mapped[str | None] = mapped_column(String(200))     # môn loại
    call_number: Mapped[str | None] = mapped_column(String(64))  # ký hiệu xếp giá
    language: Mapped[str] = mapped_column(String(8), default="vie")
    # "book" or "equipment" (thiết bị dạy học: lent to teachers through the same ledger).
    material: Mapped[str] = mapped_column(String(16), default="book", server_default="book")

    copies: Mapped[list[Copy]] = relationship(back_populates="title")


class Copy(Base):
    """Bản sách: one physical item with its ĐKCB accession number."""

    __tablename__ = "copies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title_id: Mapped[int] = mapped_column(ForeignKey("titles.id"), index=True)
    accession_number: Mapped[str] = mapped_column(String(32), unique=True)  # ĐKCB, TK.00045
    barcode: Mapped[str | None] = mapped_column(String(64), unique=True)
    rfid_item_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # GK, TK, NV, TN: the accession prefix
    status: Mapped[str] = mapped_column(String(16), default=CopyStatus.AVAILABLE)
    location: Mapped[str | None] = mapped_column(String(100))
    price: Mapped[int | None] = mapped_column(BigInteger)  # đồng
    acquired_on: Mapped[dt.date | None] = mapped_column(Date)
    # The phiếu nhập it came in with (None for copies from before thuvien kept receipts).
    receipt_id: Mapped[int | None] = mapped_column(ForeignKey("receipts.id"), index=True)
    # Weeding: the decision that withdrew it and why (mất, rách nát, ...); never deleted.
    withdrawal_id: Mapped[int | None] = mapped_column(ForeignKey("withdrawals.id"), index=True)
    withdrawal_reason: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(300))  # the "ghi chú" column of the ĐKCB register

    title: Mapped[Title] = relationship(back_populates="copies")


class AcquisitionSource(StrEnum):
    """Nguồn cấp of an intake."""

    BOUGHT = "bought"               # Trường tự mua
    DISTRICT = "district"           # PGD cấp phát
    PROVINCE = "province"           # SGD cấp phát
    DONATED = "donated"             # Biếu tặng
    OTHER = "other"                 # Khác


class Receipt(Base):
    """Phiếu nhập: one intake of copies; a line of part I of the general register.

    `number` is the general register's running number (số thứ tự vào sổ): it is never
    reset, not at a new school year either.
    """

    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    receipt_no: Mapped[str] = mapped_column(String(32))      # the paper's "số phiếu"
    received_on: Mapped[dt.date] = mapped_column(Date, index=True)
    source: Mapped[str] = mapped_column(String(16))          # AcquisitionSource
    source_detail: Mapped[str | None] = mapped_column(String(200))  # the supplier, the donor
    note: Mapped[str | None] = mapped_column(String(300))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class AccessionCounter(Base):
    """The last ĐKCB running number handed out per kind prefix (GK, TK, ...): never reset,
    so a withdrawn copy's number is never given to another."""

    __tablename__ = "accession_counters"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class WithdrawalReason(StrEnum):
    LOST = "lost"                   # mất
    WORN = "worn"                   # rách nát
    OUTDATED = "outdated"           # lạc hậu
    PESTS = "pests"                 # mối mọt
    OLD_CURRICULUM = "old_curriculum"  # chương trình cũ


class Withdrawal(Base):
    """Thanh lý: one weeding round under a numbered decision; a line of part II of the
    general register. Its copies keep their rows (status withdrawn)."""

    __tablename__ = "withdrawals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)  # running number in part II
    decision_no: Mapped[str] = mapped_column(String(64))       # số quyết định
    decided_on: Mapped[dt.date] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(String(300))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class Stocktake(Base):
    """Kiểm kê: one stocktake from start to close; closed, a line of part III of the
    general register with its counts."""

    __tablename__ = "stocktakes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)  # running number in part III
    name: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    started_by: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(64))
    # At close: {"present": n, "missing": n, "misplaced": n, "on_loan": n, "value_missing": đ, ...}
    result: Mapped[dict | None] = mapped_column(JSON)


class StocktakeScan(Base):
    """One copy seen during a stocktake, where (the shelf scanned) and by what."""

    __tablename__ = "stocktake_scans"
    __table_args__ = (UniqueConstraint("stocktake_id", "copy_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stocktake_id: Mapped[int] = mapped_column(ForeignKey("stocktakes.id"), index=True)
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id"))
    shelf: Mapped[str | None] = mapped_column(String(100))   # the location being counted
    station: Mapped[str | None] = mapped_column(String(64))  # a kiosk, the desk, a hand reader
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class Loan(Base):
    """A current loan; the row is deleted on return (history lives in the ledger)."""

    __tablename__ = "loans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id"), unique=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), index=True)
    loaned_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    due_on: Mapped[dt.date] = mapped_column(Date, index=True)
    renewals: Mapped[int] = mapped_column(Integer, default=0)
    long_loan: Mapped[bool] = mapped_column(Boolean, default=False)
    checkout_seq: Mapped[int] = mapped_column(ForeignKey("ledger_entries.seq"))


class LedgerEntry(Base):
    """One committed circulation event. Never updated, never deleted."""

    __tablename__ = "ledger_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    op: Mapped[str] = mapped_column(String(16))
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id"), index=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), index=True)
    station: Mapped[str] = mapped_column(String(64))
    # Indexed: the registers and statistics count by when it happened at the station.
    station_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    server_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    days_late: Mapped[int | None] = mapped_column(Integer)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when an offline request, replayed, met a world that had changed meanwhile (the
    # copy lent to someone else, the reader blocked): the entry records what the station
    # did and why it conflicts; an alert tells the librarian. Values: see
    # `server.circulation.Conflict`.
    conflict: Mapped[str | None] = mapped_column(String(32))


class ProcessedRequest(Base):
    """The idempotency record: the reply given to each request id, kept forever."""

    __tablename__ = "processed_requests"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    station: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(32))
    reply: Mapped[dict] = mapped_column(JSON)
    server_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # Whether the request answered was an offline replay; None in records made before
    # 0006. An online refusal later replayed offline (the station had told its reader
    # "recorded offline") raises an alert once, and this turns true.
    offline: Mapped[bool | None] = mapped_column(Boolean)


class StationEvent(Base):
    """An event a station sent (gate alarm, device fault, ...), kept once per event id.

    The unique (station, event_id) is the dedupe: a station that resends an event after
    a reconnect raises no second alert and counts no visitors twice.
    """

    __tablename__ = "station_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime())           # at the station
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    data: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (UniqueConstraint("station", "event_id",
                                       name="uq_station_events_station_event_id"),)


class StationKind(StrEnum):
    KIOSK = "kiosk"
    GATE = "gate"
    RETURNBOX = "returnbox"
    DESK = "desk"


class Station(Base):
    """A station registered for this site (`thuvien station add`): only these are served,
    and each only with the operations its kind may do."""

    __tablename__ = "stations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # its MQTT username too
    kind: Mapped[str] = mapped_column(String(16))
    registered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Alert(Base):
    """Something a librarian must look at (protocol Alert), until acknowledged."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(128), unique=True)  # the published id
    type: Mapped[str] = mapped_column(String(64))
    station: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("station_events.id"))
    # A staff member's reader code, or the type of the event that resolved it
    # (`device.ok`, `returnbox.full`) when the station reported the problem gone.
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())

    # The open alerts of a station are what the staff web and the auto-resolution read.
    __table_args__ = (Index("ix_alerts_open", "acknowledged_at", "station", "type"),)


class Visit(Base):
    """Visitors a gate counted between `since` and `until` (for the statistics)."""

    __tablename__ = "visits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station: Mapped[str] = mapped_column(String(64))
    since: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    until: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    count: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int] = mapped_column(ForeignKey("station_events.id"), unique=True)



class StaffRole(StrEnum):
    ADMIN = "admin"            # manages accounts and everything else
    LIBRARIAN = "librarian"    # runs the library: commands stations, acknowledges alerts
    VIEWER = "viewer"          # looks only (a principal, a volunteer)


class StaffUser(Base):
    """An account for the staff web (not a reader: a reader's card and PIN are for kiosks)."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)   # the login name
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))      # scrypt, see thuvien.users
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    password_changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class StaffSession(Base):
    """A signed-in browser. Only a hash of the cookie's token is kept, so a copy of the
    database does not let anyone in."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"),
                                         index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    client: Mapped[str | None] = mapped_column(String(64))


class LoginThrottle(Base):
    """Failed logins counted per account (`user:<name>`) and per client (`addr:<ip>`)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class ReaderSession(Base):
    """A reader signed in to the public catalogue with card and PIN, to see their loans.

    Apart from staff sessions: a reader's cookie opens only their own loans page. As for
    staff, only a hash of the cookie's token is kept.
    """

    __tablename__ = "reader_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"),
                                           index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)

__all__ = [
    "Alert", "Base", "Copy", "CopyStatus", "LedgerEntry", "LedgerOp", "Loan",
    "ProcessedRequest", "Reader", "ReaderKind", "ReaderStatus", "StationEvent", "Title",
    "Visit", "StaffRole", "StaffUser", "StaffSession", "LoginThrottle",
    "ReaderSession", "AcquisitionSource", "Receipt", "AccessionCounter", "WithdrawalReason",
    "Withdrawal", "Stocktake", "StocktakeScan",
]


class ServerState(Base):
    """Small values the server keeps for itself across restarts, by key: the upward
    publisher's cursor (`upward.ledger_seq`, the last ledger seq the broker took)."""

    __tablename__ = "server_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


__all__ += ["ServerState"]
