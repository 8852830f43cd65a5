"""Circulation: the rules of borrowing, applied at most once per request id.

`Circulation.handle` runs one request in one short transaction: the idempotency record
(`ProcessedRequest`), the ledger entry and the change to the current loans commit
together or not at all. Rule refusals are answers too and are stored like successes, so
a station replaying an id always hears what it heard the first time; only `internal`
errors are not stored, so that a retry can still succeed.

An offline request (`offline: true`, replayed from a station's outbox) already happened
at the station: it is applied at the station's time (`at`), and where the world changed
meanwhile the rules below (`Conflict`) decide, each conflict marked on its ledger entry
and raised as an `offline.conflict` alert in the same transaction (docs/protocol.md,
"Offline replays").
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Engine,
    Table,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

import protocol
from protocol import ErrorCode, Op, default_message
from server.calendar import LibraryCalendar, format_date
from server.config import ServerConfig
from server.fastsql import HeldConnection, Statement, insert_returning_key
from server.models import Alert as AlertRow
from server.models import (
    Copy,
    CopyStatus,
    LedgerOp,
    Loan,
    ProcessedRequest,
    Reader,
    ReaderStatus,
    Title,
)
from server.models import LedgerEntry as LedgerRow
from server.pins import verify_pin

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Conflict(StrEnum):
    """Why an offline request, replayed, did not fit the world it found.

    The value is stored in `ledger_entries.conflict`, published on the ledger entry and
    in the `offline.conflict` alert's data.
    """

    # loan.checkout of a copy now on loan to another reader: recorded, loans unchanged.
    ON_LOAN_TO_OTHER = "on_loan_to_other"
    # loan.checkout by a reader blocked (or inactive, or overdue) by then: applied.
    READER_BLOCKED = "reader_blocked"
    # loan.checkout over the reader's limits: applied (the book is gone with them).
    LIMIT_REACHED = "limit_reached"
    # loan.checkout of a copy that may not be lent (reference, lost, no policy): recorded,
    # loans unchanged.
    NOT_LOANABLE = "not_loanable"
    # loan.return of a copy not on loan: recorded against its last borrower, loans unchanged.
    NOT_ON_LOAN = "not_on_loan"
    # loan.return made before the copy's current loan began: that loan stays.
    LENT_AGAIN = "lent_again"
    # An item or a reader the library does not know: no ledger entry can name them.
    UNKNOWN_ITEM = "unknown_item"
    UNKNOWN_PATRON = "unknown_patron"
    # Any other refusal of an offline change (a renewal past its limit, ...).
    REFUSED = "refused"


# Entries with these marks changed no loan: a follower of the ledger (a gate's on-loan
# set) must not apply them.
NOT_APPLIED: frozenset[Conflict] = frozenset({
    Conflict.ON_LOAN_TO_OTHER, Conflict.NOT_LOANABLE, Conflict.NOT_ON_LOAN,
    Conflict.LENT_AGAIN})
# The operations that change loans; the others are reads, answered alike online or offline.
_CHANGES = frozenset({Op.LOAN_CHECKOUT, Op.LOAN_RETURN, Op.LOAN_RENEW})
OFFLINE_CONFLICT = "offline.conflict"


# --- messages for people ----------------------------------------------------------

_TEXTS: dict[str, dict[str, str]] = {
    "vi": {
        "unknown_patron": "Không tìm thấy thẻ bạn đọc có mã {card}.",
        "blocked": "Thẻ bạn đọc đang bị khóa{reason}. Vui lòng gặp cán bộ thư viện.",
        "inactive": "Thẻ bạn đọc không còn hiệu lực. Vui lòng gặp cán bộ thư viện.",
        "overdue": "Bạn có sách quá hạn trả: {item} (hạn trả {due}). Vui lòng trả sách trước.",
        "unknown_item": "Không tìm thấy sách có mã {item} trong thư viện.",
        "already_yours": "Bạn đang mượn cuốn này rồi.",
        "reference": "Sách này chỉ đọc tại thư viện, không mượn về nhà.",
        "unavailable": "Cuốn sách này đang ở trạng thái \u201c{status}\u201d nên không cho mượn. "
                       "Vui lòng đưa sách cho cán bộ thư viện.",
        "no_policy": "{reader_kind} không được mượn {item_kind} về nhà.",
        "limit_kind": "Bạn chỉ được mượn tối đa {limit} cuốn {item_kind} cùng lúc.",
        "limit_total": "Bạn chỉ được mượn tối đa {limit} cuốn cùng lúc. "
                       "Hãy trả bớt sách trước khi mượn thêm.",
        "not_yours": "Cuốn sách này không có trong danh sách bạn đang mượn.",
        "long_loan": "Sách mượn dài hạn không gia hạn được; hạn trả là {due}.",
        "renew_limit": "Sách này đã được gia hạn {count} lần, không thể gia hạn thêm. "
                       "Hạn trả: {due}.",
        "no_renewals": "Sách loại này không được gia hạn. Hạn trả: {due}.",
        "lent_again": "Sách {item} đã được cho mượn lại sau lúc trả {at}: "
                      "lượt mượn hiện tại được giữ nguyên.",
    },
    "en": {
        "unknown_patron": "No library card has the code {card}.",
        "blocked": "This library card is blocked{reason}. Please see the librarian.",
        "inactive": "This library card is no longer active. Please see the librarian.",
        "overdue": "You have an overdue book: {item} (due {due}). Please return it first.",
        "unknown_item": "No book with the code {item} is in the library.",
        "already_yours": "You already have this book on loan.",
        "reference": "This book is for reading in the library only.",
        "unavailable": "This copy is marked \u201c{status}\u201d and cannot be lent. "
                       "Please give it to the librarian.",
        "no_policy": "{reader_kind} may not borrow {item_kind}.",
        "limit_kind": "You may have at most {limit} {item_kind} on loan at once.",
        "limit_total": "You may have at most {limit} books on loan at once. "
                       "Please return one first.",
        "not_yours": "This book is not among your loans.",
        "long_loan": "Long loans cannot be renewed; this one is due on {due}.",
        "renew_limit": "This book has been renewed {count} times and cannot be renewed again. "
                       "Due: {due}.",
        "no_renewals": "Books of this kind cannot be renewed. Due: {due}.",
        "lent_again": "The book {item} was lent again after this return at {at}: "
                      "its current loan stays.",
    },
}

# The librarian's sentence for each conflict. {where}: the station and its time.
_CONFLICT_TEXTS: dict[str, dict[Conflict, str]] = {
    "vi": {
        Conflict.ON_LOAN_TO_OTHER: "{where}: đã cho {patron} mượn «{title}» ({item}), nhưng "
                                   "sách đang được {other} mượn. Chưa ghi nhận lượt mượn này; "
                                   "vui lòng kiểm tra.",
        Conflict.READER_BLOCKED: "{where}: đã cho {patron} mượn «{title}» ({item}) dù bạn đọc "
                                 "không được mượn ({reason}). Lượt mượn đã được ghi nhận.",
        Conflict.LIMIT_REACHED: "{where}: đã cho {patron} mượn «{title}» ({item}) vượt số "
                                "sách được mượn ({reason}). Lượt mượn đã được ghi nhận.",
        Conflict.NOT_LOANABLE: "{where}: đã cho {patron} mượn «{title}» ({item}), nhưng sách "
                               "này không được cho mượn ({reason}). Chưa ghi nhận lượt mượn; "
                               "vui lòng kiểm tra.",
        Conflict.NOT_ON_LOAN: "{where}: đã nhận trả «{title}» ({item}), nhưng sách không "
                              "đang được cho mượn{last_part}. Không thay đổi gì.",
        Conflict.LENT_AGAIN: "{where}: đã nhận trả «{title}» ({item}) của {patron}, nhưng "
                             "sau đó sách đã được cho {other} mượn. Lượt mượn hiện tại được "
                             "giữ nguyên; vui lòng kiểm tra.",
        Conflict.UNKNOWN_ITEM: "{where}: {action} sách mã {item} không có trong thư viện"
                               "{patron_part}. Không ghi nhận được; vui lòng kiểm tra.",
        Conflict.UNKNOWN_PATRON: "{where}: {action} với thẻ mã {patron} không có trong thư "
                                 "viện (sách {item}). Không ghi nhận được; vui lòng kiểm tra.",
        Conflict.REFUSED: "{where}: {action} sách {item}{patron_part} bị từ chối: {reason}",
    },
    "en": {
        Conflict.ON_LOAN_TO_OTHER: "{where}: lent «{title}» ({item}) to {patron}, but it is "
                                   "on loan to {other}. This loan was not recorded; please "
                                   "check.",
        Conflict.READER_BLOCKED: "{where}: lent «{title}» ({item}) to {patron} although the "
                                 "reader may not borrow ({reason}). The loan was recorded.",
        Conflict.LIMIT_REACHED: "{where}: lent «{title}» ({item}) to {patron} over their "
                                "limit ({reason}). The loan was recorded.",
        Conflict.NOT_LOANABLE: "{where}: lent «{title}» ({item}) to {patron}, but it may not "
                               "be lent ({reason}). The loan was not recorded; please check.",
        Conflict.NOT_ON_LOAN: "{where}: took back «{title}» ({item}), but it was not on "
                              "loan{last_part}. Nothing changed.",
        Conflict.LENT_AGAIN: "{where}: took back «{title}» ({item}) from {patron}, but it "
                             "was lent to {other} after that. The current loan stays; please "
                             "check.",
        Conflict.UNKNOWN_ITEM: "{where}: {action} a book {item} that is not in the library"
                               "{patron_part}. Nothing recorded; please check.",
        Conflict.UNKNOWN_PATRON: "{where}: {action} with a card {patron} that is not in the "
                                 "library (book {item}). Nothing recorded; please check.",
        Conflict.REFUSED: "{where}: {action} of {item}{patron_part} was refused: {reason}",
    },
}
_CONFLICT_WORDS: dict[str, dict[str, str]] = {
    "vi": {"where": "Trạm {station} (ngoại tuyến, lúc {at})", "loan.checkout": "cho mượn",
           "loan.return": "nhận trả", "loan.renew": "gia hạn",
           "patron_part": " (bạn đọc {patron})", "last_part": " (người mượn gần nhất: {patron})",
           "blocked": "thẻ bị khóa{reason}", "inactive": "thẻ không còn hiệu lực",
           "overdue": "có sách quá hạn: {item}, hạn trả {due}",
           "limit_kind": "tối đa {limit} cuốn {item_kind}",
           "limit_total": "tối đa {limit} cuốn cùng lúc"},
    "en": {"where": "Station {station} (offline, at {at})", "loan.checkout": "lent",
           "loan.return": "took back", "loan.renew": "renewal",
           "patron_part": " (reader {patron})", "last_part": " (last borrower: {patron})",
           "blocked": "the card is blocked{reason}", "inactive": "the card is no longer active",
           "overdue": "an overdue book: {item}, due {due}",
           "limit_kind": "at most {limit} {item_kind}",
           "limit_total": "at most {limit} books at once"},
}
_ITEM_KINDS: dict[str, dict[str, str]] = {
    "vi": {"GK": "sách giáo khoa", "TK": "sách tham khảo", "NV": "sách nghiệp vụ",
           "TN": "sách thiếu nhi"},
    "en": {"GK": "textbooks", "TK": "reference books", "NV": "teachers' books",
           "TN": "children's books"},
}
_READER_KINDS: dict[str, dict[str, str]] = {
    "vi": {"student": "Học sinh", "teacher": "Giáo viên", "staff": "Cán bộ, nhân viên"},
    "en": {"student": "Students", "teacher": "Teachers", "staff": "Staff"},
}
_COPY_STATUSES: dict[str, dict[str, str]] = {
    "vi": {"on_loan": "đang cho mượn", "lost": "mất", "damaged": "hư hỏng",
           "withdrawn": "đã thanh lý", "reference": "đọc tại chỗ"},
    "en": {"on_loan": "on loan", "lost": "lost", "damaged": "damaged",
           "withdrawn": "withdrawn", "reference": "reference only"},
}


# --- statements, built once ---------------------------------------------------------
# Core statements on the mapped tables with bound parameters. Each Circulation compiles
# them once for its engine's dialect and runs them straight on the DBAPI cursor of one
# held connection (server/fastsql.py): SQLAlchemy writes the SQL and converts the
# values, without its per-execution machinery, which cost more than the SQL itself.

def _table(model: type[Any]) -> Table:
    return model.__table__  # type: ignore[no-any-return]


_readers, _titles, _copies = _table(Reader), _table(Title), _table(Copy)
_loans, _ledger, _processed = _table(Loan), _table(LedgerRow), _table(ProcessedRequest)

_READER_COLUMNS = select(_readers.c.id, _readers.c.code, _readers.c.moet_id,
                         _readers.c.card_uid, _readers.c.name, _readers.c.kind,
                         _readers.c.class_name, _readers.c.status, _readers.c.block_reason,
                         _readers.c.pin_hash)
_READER_BY_CARD = _READER_COLUMNS.where(or_(
    _readers.c.code == bindparam("key"), _readers.c.code == bindparam("upper"),
    _readers.c.moet_id == bindparam("key"), _readers.c.card_uid == bindparam("upper")))
# Codes stored in another case than typed: a scan, paid only when the lookup above missed.
_READER_BY_CARD_ANY_CASE = _READER_COLUMNS.where(or_(
    func.upper(_readers.c.code) == bindparam("upper"),
    func.upper(_readers.c.card_uid) == bindparam("upper")))

_COPY_COLUMNS = (
    select(_copies.c.id, _copies.c.accession_number, _copies.c.barcode,
           _copies.c.rfid_item_id, _copies.c.kind, _copies.c.status, _titles.c.title,
           _loans.c.id.label("loan_id"), _loans.c.reader_id, _loans.c.due_on,
           _loans.c.renewals, _loans.c.long_loan, _loans.c.loaned_at, _loans.c.checkout_seq,
           _readers.c.code.label("borrower_code"), _readers.c.kind.label("borrower_kind"),
           _readers.c.class_name.label("borrower_class"),
           _readers.c.name.label("borrower_name"))
    .join(_titles, _titles.c.id == _copies.c.title_id)
    .outerjoin(_loans, _loans.c.copy_id == _copies.c.id)
    .outerjoin(_readers, _readers.c.id == _loans.c.reader_id))
_COPY_BY_CODE = _COPY_COLUMNS.where(or_(
    _copies.c.barcode == bindparam("key"), _copies.c.barcode == bindparam("upper"),
    _copies.c.accession_number == bindparam("key"),
    _copies.c.accession_number == bindparam("upper"),
    _copies.c.rfid_item_id == bindparam("key"), _copies.c.rfid_item_id == bindparam("upper")))
_COPY_BY_CODE_ANY_CASE = _COPY_COLUMNS.where(or_(
    func.upper(_copies.c.barcode) == bindparam("upper"),
    func.upper(_copies.c.accession_number) == bindparam("upper"),
    func.upper(_copies.c.rfid_item_id) == bindparam("upper")))

_READER_LOANS = (select(_copies.c.accession_number, _copies.c.kind, _titles.c.title,
                        _loans.c.due_on, _loans.c.long_loan)
                 .select_from(_loans).join(_copies, _copies.c.id == _loans.c.copy_id)
                 .join(_titles, _titles.c.id == _copies.c.title_id)
                 .where(_loans.c.reader_id == bindparam("reader_id"))
                 .order_by(_loans.c.due_on, _copies.c.accession_number))

# gate.sync in ONE statement: on PostgreSQL (read committed) each statement of a
# transaction sees its own snapshot, so the loans and the last seq read apart could
# disagree. The one-row `last_entry` left-joined to the loans still answers with no loans.
_LAST_SEQ = (select(func.coalesce(func.max(_ledger.c.seq), 0).label("seq"))
             .subquery("last_entry"))
_ON_LOAN = (select(_copies.c.accession_number, _copies.c.barcode, _copies.c.rfid_item_id)
            .select_from(_loans).join(_copies, _copies.c.id == _loans.c.copy_id)
            .subquery("on_loan"))
_GATE_SYNC = (select(_LAST_SEQ.c.seq, _ON_LOAN.c.accession_number, _ON_LOAN.c.barcode,
                     _ON_LOAN.c.rfid_item_id)
              .select_from(_LAST_SEQ.outerjoin(_ON_LOAN, true())))
# Room left in a reply for its envelope (id up to 128 characters, seq, keys).
_ENVELOPE_ROOM = 1024

# Who borrowed a copy last before a ledger seq: the reader an offline return that
# cannot apply is recorded against.
_LAST_BORROWER = (select(_readers.c.id, _readers.c.code, _readers.c.kind,
                         _readers.c.class_name, _readers.c.name)
                  .select_from(_ledger).join(_readers, _readers.c.id == _ledger.c.reader_id)
                  .where(_ledger.c.copy_id == bindparam("copy"),
                         _ledger.c.op == LedgerOp.CHECKOUT.value,
                         # BIGINT: "before any seq" is beyond PostgreSQL's INTEGER.
                         _ledger.c.seq < bindparam("before_seq", type_=BigInteger))
                  .order_by(_ledger.c.seq.desc()).limit(1))

_STORED_REPLY = (select(_processed.c.reply, _processed.c.station, _processed.c.op,
                        _processed.c.offline)
                 .where(_processed.c.request_id == bindparam("request_id")))
_MARK_PROCESSED_OFFLINE = (update(_processed).where(_processed.c.request_id == bindparam("rid"))
                           .values(offline=True))

# Both forms built here, before either is compiled: SQLAlchemy 2.1 memoizes a statement's
# selected columns at compile time and `.returning()` copies that memo, so deriving the
# second from the first after compiling it (for SQLite) left PostgreSQL with no RETURNING
# columns, hence no new seq.
_INSERT_LEDGER = insert(_ledger)
_INSERT_LEDGER_RETURNING_SEQ = insert(_ledger).returning(_ledger.c.seq)
_LEDGER_COLUMNS = ("request_id", "op", "copy_id", "reader_id", "station", "station_at",
                   "server_at", "due_on", "days_late", "offline", "conflict")
_alerts = _table(AlertRow)
_INSERT_ALERT = insert(_alerts)
_ALERT_COLUMNS = ("alert_id", "type", "station", "at", "message", "data")
_NO_SEQ = 2**62  # "before any seq to come"
_INSERT_LOAN = insert(_loans)
_LOAN_COLUMNS = ("copy_id", "reader_id", "loaned_at", "due_on", "renewals", "long_loan",
                 "checkout_seq")
_INSERT_PROCESSED = insert(_processed)
_PROCESSED_COLUMNS = ("request_id", "station", "op", "reply", "server_at", "offline")
# Bound names differ from the column names: SQLAlchemy reserves those for SET clauses.
_SET_COPY_STATUS = (update(_copies).where(_copies.c.id == bindparam("copy"))
                    .values(status=bindparam("new_status")))
_DELETE_LOAN = delete(_loans).where(_loans.c.id == bindparam("loan"))
_RENEW_LOAN = (update(_loans).where(_loans.c.id == bindparam("loan"),
                                    _loans.c.renewals == bindparam("seen_renewals"))
               .values(due_on=bindparam("new_due"), renewals=bindparam("new_renewals")))


class _Sql:
    """The statements above, compiled for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        def compiled(statement: Any, columns: Sequence[str] | None = None) -> Statement:
            return Statement(statement, dialect, column_keys=columns)

        self.reader_by_card = compiled(_READER_BY_CARD)
        self.reader_by_card_any_case = compiled(_READER_BY_CARD_ANY_CASE)
        self.copy_by_code = compiled(_COPY_BY_CODE)
        self.copy_by_code_any_case = compiled(_COPY_BY_CODE_ANY_CASE)
        self.reader_loans = compiled(_READER_LOANS)
        self.gate_sync = compiled(_GATE_SYNC)
        self.last_borrower = compiled(_LAST_BORROWER)
        self.insert_alert = compiled(_INSERT_ALERT, _ALERT_COLUMNS)
        self.stored_reply = compiled(_STORED_REPLY)
        # The new seq by RETURNING where SQLAlchemy would use it (PostgreSQL), else by
        # the driver's lastrowid (SQLite).
        self.insert_ledger = compiled(
            _INSERT_LEDGER_RETURNING_SEQ if insert_returning_key(dialect)
            else _INSERT_LEDGER, _LEDGER_COLUMNS)
        self.insert_loan = compiled(_INSERT_LOAN, _LOAN_COLUMNS)
        self.insert_processed = compiled(_INSERT_PROCESSED, _PROCESSED_COLUMNS)
        self.mark_processed_offline = compiled(_MARK_PROCESSED_OFFLINE)
        self.set_copy_status = compiled(_SET_COPY_STATUS)
        self.delete_loan = compiled(_DELETE_LOAN)
        self.renew_loan = compiled(_RENEW_LOAN)


Db = Any  # a DBAPI cursor inside HeldConnection.transaction(), or a SQLAlchemy Connection
Row = Any  # a named tuple from Statement.all()


class _Refused(Exception):
    """A rule says no: answered and stored like a success."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code.value)
        self.code = code
        self.message = message


class _Conflict(_Refused):
    """Another transaction changed the same loan first: roll back, then answer."""


class _Recorded(_Refused):
    """An offline change recorded with its conflict but not applied: the ledger entry and
    the alert commit, and the station hears why."""


@dataclass(slots=True)
class _Call:
    db: Db
    request: protocol.Request
    station: str
    now: dt.datetime   # the server's clock: `server_at`
    at: dt.datetime    # when it happened: `now` online, the station's `at` offline
    today: dt.date     # the site's date at `at`: due dates, lateness, overdue blocks
    entries: list[protocol.LedgerEntry] = field(default_factory=list)
    alerts: list[protocol.Alert] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request did: all of it committed, ready to publish."""

    reply: protocol.Reply
    entries: list[protocol.LedgerEntry] = field(default_factory=list)
    alerts: list[protocol.Alert] = field(default_factory=list)
    # True when the reply is the stored one of an id seen before: nothing new happened.
    repeated: bool = False


class Circulation:
    def __init__(self, sessions: sessionmaker[Session], config: ServerConfig,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        # No ORM session, no pool check-out and no SQLAlchemy execution machinery per
        # request: one held connection, one transaction per request, the statements
        # above precompiled (server/fastsql.py).
        self._engine: Engine = sessions.kw["bind"]
        self._db = HeldConnection(self._engine)
        self._sql = _Sql(self._engine.dialect)
        self.config = config
        self.calendar = LibraryCalendar(config.calendar)
        self._clock = clock
        self._language = config.language
        self._rules = config.circulation
        self._policies = {(rule.reader_kind, rule.item_kind): rule for rule in self._rules.policy}
        self._handlers: dict[Op, Callable[[_Call, Any], BaseModel]] = {
            Op.PATRON_IDENTIFY: self._identify,
            Op.LOAN_CHECKOUT: self._checkout,
            Op.LOAN_RETURN: self._return,
            Op.LOAN_RENEW: self._renew,
            Op.ITEM_INFO: self._item_info,
            Op.GATE_SYNC: self._gate_sync,
        }

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def clock(self) -> Callable[[], dt.datetime]:
        return self._clock

    # --- the entry point ------------------------------------------------------------

    def handle(self, request: protocol.Request,
               station: str) -> tuple[protocol.Reply, list[protocol.LedgerEntry]]:
        """Answer `request`; the ledger entries returned are committed, ready to publish.

        The alerts an offline conflict raises are committed too; `handle_request` returns
        them for publishing."""
        outcome = self.handle_request(request, station)
        return outcome.reply, outcome.entries

    def handle_request(self, request: protocol.Request, station: str) -> Outcome:
        """Answer `request`: the reply, ledger entries and alerts, all committed."""
        try:
            try:
                return self._handle(request, station)
            except DBAPIError as error:
                if not error.connection_invalidated:
                    raise
                # The database connection died (a PostgreSQL restart, say) and was dropped:
                # once more on a new one. Safe with the idempotency record: had the lost
                # COMMIT gone through, this second run finds its reply stored.
                log.warning("request %s: the database connection was lost (%s); retrying",
                            request.id, error.orig)
                return self._handle(request, station)
        except Exception:
            log.exception("request %s (%s) from station %s failed", request.id,
                          request.op.value, station)
            return Outcome(self._failure(request.id, ErrorCode.INTERNAL))

    def bad_request(self, request_id: str, detail: str) -> protocol.Reply:
        """The answer to a payload that breaks the contract; not stored, like `internal`."""
        return protocol.Reply.failure(
            request_id, ErrorCode.BAD_REQUEST,
            f"{default_message(ErrorCode.BAD_REQUEST, self._language)} ({detail})")

    def _handle(self, request: protocol.Request, station: str,
                race_retry: bool = True) -> Outcome:
        now = self._clock()
        # A replay cannot have happened after it reached us: a station clock running
        # ahead would otherwise push due dates out.
        at = min(request.at, now) if request.offline else now
        try:
            with self._db.transaction() as db:
                stored = self._stored_reply(db, request, station)
                if stored is not None:
                    if (request.offline and request.op in _CHANGES and not stored.ok
                            and self._answered_online(db, request.id)):
                        # Refused online while the station, its reply lost, told the
                        # reader "recorded offline": never silently dropped.
                        call = _Call(db, request, station, now, at, self.calendar.local_date(at))
                        assert stored.error is not None
                        self._raise_alert(call, Conflict.REFUSED,
                                          reason=stored.error.message.rstrip("."))
                        self._sql.mark_processed_offline.execute(db, {"rid": request.id})
                        return Outcome(stored, call.entries, call.alerts, repeated=True)
                    return Outcome(stored, repeated=True)
                call = _Call(db, request, station, now, at, self.calendar.local_date(at))
                try:
                    result = self._handlers[request.op](call, request.args)
                    reply = protocol.Reply.success(request.id, result)
                except _Conflict:
                    raise
                except _Refused as refusal:
                    if request.offline and request.op in _CHANGES and not call.alerts:
                        # Never silently dropped: whatever refused it, someone looks.
                        self._refused_offline(call, refusal)
                    reply = self._failure(request.id, refusal.code, refusal.message)
                self._store_reply(db, request, station, now, reply)
            return Outcome(reply, call.entries, call.alerts)
        except _Conflict as conflict:
            if race_retry and request.offline and request.op in _CHANGES:
                # Lost a race with another station: run again, so the replay meets the
                # new state and its conflict is recorded and raised.
                return self._handle(request, station, race_retry=False)
            reply = self._failure(request.id, conflict.code, conflict.message)
            return Outcome(self._store_alone(request, station, now, reply))
        except IntegrityError:
            # Another process answered this id between our look-up and our insert.
            stored = self._read_stored_reply(request, station)
            if stored is None:
                raise
            return Outcome(stored, repeated=True)

    # --- operations -----------------------------------------------------------------

    def _identify(self, call: _Call, args: protocol.IdentifyArgs) -> protocol.IdentifyResult:
        reader = self._reader(call.db, args.card)
        # A station sends a PIN only where it needs one checked (staff mode): a reader
        # with no PIN set cannot pass that check.
        if args.pin is not None and not (reader.pin_hash and verify_pin(args.pin, reader.pin_hash)):
            self._refuse(ErrorCode.WRONG_PIN)
        loans = self._reader_loans(call.db, reader.id)
        blocks = [code for code, _ in self._blocks(reader, loans, call.today)]
        return protocol.IdentifyResult(
            patron=protocol.PatronInfo(id=reader.code, name=reader.name, kind=reader.kind,
                                       class_=reader.class_name),
            loans=[protocol.LoanLine(item=loan.accession_number, title=loan.title,
                                     due=loan.due_on, overdue=loan.due_on < call.today)
                   for loan in loans],
            can_borrow=0 if blocks else self._can_borrow(reader.kind, loans),
            blocks=blocks)

    def _checkout(self, call: _Call, args: protocol.CheckoutArgs) -> protocol.CheckoutResult:
        # Offline, the book already left with the reader: a rule that would refuse it now
        # is a conflict to record, and the loan is applied wherever it can be.
        offline = call.request.offline
        conflict: tuple[Conflict, str] | None = None
        reader = self._reader(call.db, args.patron)
        patron = (reader.code, reader.kind, reader.class_name)
        loans = self._reader_loans(call.db, reader.id)
        blocks = self._blocks(reader, loans, call.today)
        if blocks:
            if not offline:
                raise _Refused(ErrorCode.PATRON_BLOCKED, blocks[0][1])
            conflict = (Conflict.READER_BLOCKED,
                        self._block_reason(blocks[0][0], reader, loans, call.today))
        copy = self._copy(call.db, args.item)
        if copy.loan_id is not None:
            if copy.reader_id == reader.id:
                if offline:
                    # Lent to the same reader meanwhile (at the desk): nothing to change.
                    return protocol.CheckoutResult(item=copy.accession_number,
                                                   title=copy.title, due=copy.due_on)
                self._refuse(ErrorCode.ITEM_ON_LOAN, "already_yours")
            if offline:
                self._record_not_applied(call, Conflict.ON_LOAN_TO_OTHER, LedgerOp.CHECKOUT,
                                         copy, reader, ErrorCode.ITEM_ON_LOAN)
            self._refuse(ErrorCode.ITEM_ON_LOAN)
        policy = self._policies.get((reader.kind, copy.kind))
        if copy.status != CopyStatus.AVAILABLE or policy is None or policy.max_items == 0:
            refusal = self._unloanable(copy, reader)
            if offline:
                self._record_not_applied(call, Conflict.NOT_LOANABLE, LedgerOp.CHECKOUT,
                                         copy, reader, refusal.code, refusal.message)
            raise refusal
        assert policy is not None
        over = self._over_limit(policy, copy.kind, loans, reader.kind)
        if over is not None:
            if not offline:
                raise over[0]
            conflict = conflict or (Conflict.LIMIT_REACHED, over[1])

        due = self.calendar.due_date(call.today, policy.loan_days, policy.long_loan)
        seq = self._append_ledger(call, LedgerOp.CHECKOUT, copy, reader.id, patron, due=due,
                                  conflict=conflict[0] if conflict else None)
        try:
            self._sql.insert_loan.execute(call.db, {
                "copy_id": copy.id, "reader_id": reader.id, "loaned_at": call.at,
                "due_on": due, "renewals": 0, "long_loan": policy.long_loan,
                "checkout_seq": seq})
        except IntegrityError as exc:
            if "copy_id" not in str(exc.orig):
                raise
            # Another station lent this copy between our check and our insert.
            raise _Conflict(ErrorCode.ITEM_ON_LOAN,
                            default_message(ErrorCode.ITEM_ON_LOAN, self._language)) from None
        self._set_copy_status(call.db, copy.id, CopyStatus.ON_LOAN)
        if conflict is not None:
            self._raise_alert(call, conflict[0], copy=copy, reader=reader, seq=seq,
                              reason=conflict[1].rstrip("."))
        return protocol.CheckoutResult(item=copy.accession_number, title=copy.title, due=due)

    def _unloanable(self, copy: Row, reader: Row) -> _Refused:
        """Why `copy` may not be lent to `reader` (its status, or no policy allows it)."""
        try:
            if copy.status != CopyStatus.AVAILABLE:
                self._refuse_unavailable(copy)
            self._refuse(ErrorCode.ITEM_NOT_LOANABLE, "no_policy",
                         reader_kind=self._words(_READER_KINDS, reader.kind),
                         item_kind=self._item_kind(copy.kind))
        except _Refused as refusal:
            return refusal

    def _over_limit(self, policy: Any, item_kind: str, loans: Sequence[Row],
                    reader_kind: str) -> tuple[_Refused, str] | None:
        """The refusal for the reader and the reason for the librarian, if over a limit."""
        words = _CONFLICT_WORDS[self._language]
        if sum(1 for loan in loans if loan.kind == item_kind) >= policy.max_items:
            values = {"limit": policy.max_items, "item_kind": self._item_kind(item_kind)}
            return (_Refused(ErrorCode.LIMIT_REACHED, self._text("limit_kind", **values)),
                    words["limit_kind"].format(**values))
        total = self._rules.max_loans.get(reader_kind)
        if not policy.long_loan and total is not None \
                and sum(1 for loan in loans if not loan.long_loan) >= total:
            return (_Refused(ErrorCode.LIMIT_REACHED, self._text("limit_total", limit=total)),
                    words["limit_total"].format(limit=total))
        return None

    def _block_reason(self, code: str, reader: Row, loans: Sequence[Row],
                      today: dt.date) -> str:
        """Why a reader may not borrow, in the librarian's words (the block `code`)."""
        words = _CONFLICT_WORDS[self._language]
        if code == "overdue":
            late = next(loan for loan in loans if loan.due_on < today)
            return words["overdue"].format(item=late.accession_number,
                                           due=format_date(late.due_on))
        if code == "blocked":
            return words["blocked"].format(
                reason=f": {reader.block_reason}" if reader.block_reason else "")
        return words[code]

    def _return(self, call: _Call, args: protocol.ReturnArgs) -> protocol.ReturnResult:
        copy = self._copy(call.db, args.item)
        offline = call.request.offline
        if copy.loan_id is None:
            if offline:
                self._record_not_applied(call, Conflict.NOT_ON_LOAN, LedgerOp.RETURN, copy,
                                         None, ErrorCode.ITEM_NOT_ON_LOAN)
            self._refuse(ErrorCode.ITEM_NOT_ON_LOAN)
        if offline and copy.loaned_at > call.at:
            # Returned at the station before this loan began: the return ended the loan
            # before it, which someone else (the desk) has closed meanwhile.
            self._record_not_applied(
                call, Conflict.LENT_AGAIN, LedgerOp.RETURN, copy, None,
                ErrorCode.ITEM_NOT_ON_LOAN,
                self._text("lent_again", item=copy.accession_number,
                           at=self._station_time(call)))
        days_late = max(0, (call.today - copy.due_on).days)
        self._append_ledger(call, LedgerOp.RETURN, copy, copy.reader_id,
                            (copy.borrower_code, copy.borrower_kind, copy.borrower_class),
                            days_late=days_late)
        deleted = self._sql.delete_loan.execute(call.db, {"loan": copy.loan_id})
        if deleted.rowcount != 1:
            # Returned at another station in the meantime (possible on PostgreSQL).
            raise _Conflict(ErrorCode.ITEM_NOT_ON_LOAN,
                            default_message(ErrorCode.ITEM_NOT_ON_LOAN, self._language))
        self._set_copy_status(call.db, copy.id, CopyStatus.AVAILABLE)
        return protocol.ReturnResult(item=copy.accession_number, title=copy.title,
                                     was_overdue=days_late > 0, days_late=days_late)

    def _renew(self, call: _Call, args: protocol.RenewArgs) -> protocol.RenewResult:
        reader = self._reader(call.db, args.patron)
        copy = self._copy(call.db, args.item)
        if copy.loan_id is None:
            self._refuse(ErrorCode.ITEM_NOT_ON_LOAN)
        if copy.reader_id != reader.id:
            self._refuse(ErrorCode.ITEM_NOT_ON_LOAN, "not_yours")
        loans = self._reader_loans(call.db, reader.id)
        self._refuse_if_blocked(reader, loans, call.today)
        current_due = format_date(copy.due_on)
        if copy.long_loan:
            self._refuse(ErrorCode.RENEW_LIMIT, "long_loan", due=current_due)
        policy = self._policies.get((reader.kind, copy.kind))
        if policy is None:
            self._refuse(ErrorCode.ITEM_NOT_LOANABLE, "no_policy",
                         reader_kind=self._words(_READER_KINDS, reader.kind),
                         item_kind=self._item_kind(copy.kind))
        if policy.renewals == 0:
            self._refuse(ErrorCode.RENEW_LIMIT, "no_renewals", due=current_due)
        if copy.renewals >= policy.renewals:
            self._refuse(ErrorCode.RENEW_LIMIT, "renew_limit", count=copy.renewals,
                         due=current_due)

        due = max(self.calendar.due_date(call.today, policy.loan_days), copy.due_on)
        self._append_ledger(call, LedgerOp.RENEW, copy, reader.id,
                            (reader.code, reader.kind, reader.class_name), due=due)
        # The renewal count in the WHERE makes a concurrent renewal of the same loan
        # fail here instead of both being granted.
        changed = self._sql.renew_loan.execute(call.db, {
            "loan": copy.loan_id, "seen_renewals": copy.renewals, "new_due": due,
            "new_renewals": copy.renewals + 1})
        if changed.rowcount != 1:
            raise RuntimeError(f"loan {copy.loan_id} changed during its renewal; retry")
        return protocol.RenewResult(item=copy.accession_number, due=due, title=copy.title)

    def _item_info(self, call: _Call, args: protocol.ItemInfoArgs) -> protocol.ItemInfoResult:
        copy = self._copy(call.db, args.item)
        return protocol.ItemInfoResult(item=copy.accession_number, title=copy.title,
                                       status=copy.status, due=copy.due_on)

    def _gate_sync(self, call: _Call, _args: protocol.GateSyncArgs) -> protocol.GateSyncResult:
        rows = self._sql.gate_sync.all(call.db, {})
        # Every identifier of each copy on loan: a tag may carry the barcode or the RFID
        # item id, while ledger entries name the accession number.
        items = sorted({code for row in rows
                        for code in (row.accession_number, row.barcode, row.rfid_item_id)
                        if code})
        if len(json.dumps(items, ensure_ascii=False).encode()) > \
                protocol.MAX_PAYLOAD_BYTES - _ENVELOPE_ROOM:
            # A station drops a reply over the payload limit: the accession numbers alone
            # still let the gate follow the ledger.
            items = sorted({row.accession_number for row in rows if row.accession_number})
            log.warning("gate.sync: %d copies on loan; only their accession numbers fit "
                        "in one reply", len(items))
        return protocol.GateSyncResult(items=items, seq=rows[0].seq)

    # --- rules ----------------------------------------------------------------------

    def _blocks(self, reader: Row, loans: Sequence[Row],
                today: dt.date) -> list[tuple[str, str]]:
        """Why this reader may not borrow: (code, message) pairs, most serious first."""
        blocks: list[tuple[str, str]] = []
        if reader.status == ReaderStatus.BLOCKED:
            reason = f": {reader.block_reason}" if reader.block_reason else ""
            blocks.append(("blocked", self._text("blocked", reason=reason)))
        elif reader.status == ReaderStatus.INACTIVE:
            blocks.append(("inactive", self._text("inactive")))
        elif reader.status != ReaderStatus.ACTIVE:
            raise ValueError(f"reader {reader.code} has an unknown status {reader.status!r}")
        after = self._rules.block_overdue_after_days
        if after is not None:
            # Loans come ordered by due date, so the first one late enough is the oldest.
            for loan in loans:
                if (today - loan.due_on).days > after:
                    blocks.append(("overdue", self._text(
                        "overdue", item=loan.accession_number, due=format_date(loan.due_on))))
                    break
        return blocks

    def _refuse_if_blocked(self, reader: Row, loans: Sequence[Row],
                           today: dt.date) -> None:
        blocks = self._blocks(reader, loans, today)
        if blocks:
            raise _Refused(ErrorCode.PATRON_BLOCKED, blocks[0][1])

    def _can_borrow(self, reader_kind: str, loans: Sequence[Row]) -> int:
        total = self._rules.max_loans.get(reader_kind)
        if total is not None:
            return max(0, total - sum(1 for loan in loans if not loan.long_loan))
        # No overall cap for this kind: what the per-kind short-loan limits still allow.
        return sum(max(0, rule.max_items - sum(1 for loan in loans if loan.kind == kind))
                   for (rk, kind), rule in self._policies.items()
                   if rk == reader_kind and not rule.long_loan)

    def _refuse_unavailable(self, copy: Row) -> NoReturn:
        if copy.status == CopyStatus.ON_LOAN:
            # The loans table is the truth; a status without a loan is worth a look.
            log.warning("copy %s is marked on_loan but has no current loan",
                        copy.accession_number)
            self._refuse(ErrorCode.ITEM_ON_LOAN)
        if copy.status == CopyStatus.REFERENCE:
            self._refuse(ErrorCode.ITEM_NOT_LOANABLE, "reference")
        self._refuse(ErrorCode.ITEM_NOT_LOANABLE, "unavailable",
                     status=self._words(_COPY_STATUSES, copy.status))

    # --- data -----------------------------------------------------------------------

    def _reader(self, db: Db, card: str) -> Row:
        key = card.strip()
        upper = key.upper()
        params = {"key": key, "upper": upper}
        rows = self._sql.reader_by_card.all(db, params) \
            or self._sql.reader_by_card_any_case.all(db, params)
        if not rows:
            self._refuse(ErrorCode.UNKNOWN_PATRON, "unknown_patron", card=key)
        # A card number equal to another reader's MOET id: the card's own code wins.
        return min(rows, key=lambda row: (row.code.upper() != upper, row.moet_id != key))

    def _copy(self, db: Db, item: str) -> Row:
        key = item.strip()
        upper = key.upper()
        params = {"key": key, "upper": upper}
        rows = self._sql.copy_by_code.all(db, params) \
            or self._sql.copy_by_code_any_case.all(db, params)
        if not rows:
            self._refuse(ErrorCode.UNKNOWN_ITEM, "unknown_item", item=key)
        return min(rows, key=lambda row: ((row.barcode or "").upper() != upper,
                                          row.accession_number.upper() != upper))

    def _reader_loans(self, db: Db, reader_id: int) -> Sequence[Row]:
        return self._sql.reader_loans.all(db, {"reader_id": reader_id})

    def _append_ledger(self, call: _Call, op: LedgerOp, copy: Row, reader_id: int,
                       patron: tuple[str, str, str | None], due: dt.date | None = None,
                       days_late: int | None = None, conflict: Conflict | None = None) -> int:
        request = call.request
        seq = self._sql.insert_ledger.inserted_key(call.db, {
            "request_id": request.id, "op": op.value, "copy_id": copy.id,
            "reader_id": reader_id, "station": call.station, "station_at": request.at,
            "server_at": call.now, "due_on": due, "days_late": days_late,
            "offline": request.offline, "conflict": conflict.value if conflict else None})
        zone = self.calendar.zone
        call.entries.append(protocol.LedgerEntry(
            seq=seq, id=request.id, op=op.value, item=copy.accession_number, title=copy.title,
            patron=patron[0], patron_kind=patron[1], patron_class=patron[2],
            station=call.station, station_at=request.at.astimezone(zone),
            server_at=call.now.astimezone(zone), due=due, days_late=days_late,
            offline=request.offline, conflict=conflict.value if conflict else None,
            codes=[code for code in (copy.barcode, copy.rfid_item_id)
                   if code and code != copy.accession_number]))
        return seq

    # --- offline conflicts ----------------------------------------------------------

    def _record_not_applied(self, call: _Call, conflict: Conflict, op: LedgerOp, copy: Row,
                            reader: Row | None, code: ErrorCode,
                            message: str | None = None) -> NoReturn:
        """Record an offline change that cannot apply, then answer `code`: its ledger
        entry (where it can name a reader) and its alert commit, the loans stay."""
        other = None
        if copy.loan_id is not None:
            other = self._person(copy.borrower_name, copy.borrower_code)
        if op is LedgerOp.RETURN:
            # A return names no reader: the entry goes to whoever borrowed it last before
            # the current loan (none when the copy was never lent).
            before = copy.checkout_seq if copy.loan_id is not None else _NO_SEQ
            reader = self._sql.last_borrower.first(call.db, {"copy": copy.id,
                                                             "before_seq": before})
        seq = None
        if reader is not None:
            seq = self._append_ledger(call, op, copy, reader.id,
                                      (reader.code, reader.kind, reader.class_name),
                                      conflict=conflict)
        self._raise_alert(call, conflict, copy=copy, reader=reader, other=other, seq=seq,
                          reason=(message or "").rstrip(".") or None)
        raise _Recorded(code, message or default_message(code, self._language))

    def _refused_offline(self, call: _Call, refusal: _Refused) -> None:
        """The alert for an offline change a rule refused outright."""
        conflict = {ErrorCode.UNKNOWN_ITEM: Conflict.UNKNOWN_ITEM,
                    ErrorCode.UNKNOWN_PATRON: Conflict.UNKNOWN_PATRON}.get(
                        refusal.code, Conflict.REFUSED)
        self._raise_alert(call, conflict, reason=refusal.message.rstrip("."))

    def _raise_alert(self, call: _Call, conflict: Conflict, *, copy: Row | None = None,
                     reader: Row | None = None, other: str | None = None,
                     seq: int | None = None, reason: str | None = None) -> None:
        request = call.request
        args = request.args
        item = copy.accession_number if copy is not None else getattr(args, "item", "")
        patron_code = reader.code if reader is not None else getattr(args, "patron", None)
        patron = self._person(reader.name, reader.code) if reader is not None else patron_code
        words = _CONFLICT_WORDS[self._language]
        station_at = self._station_time(call)
        values: dict[str, Any] = {
            "where": words["where"].format(station=call.station, at=station_at),
            "action": words.get(request.op.value, request.op.value),
            "item": item, "title": copy.title if copy is not None else item,
            "patron": patron or "", "other": other or "", "reason": reason or "",
            "patron_part": words["patron_part"].format(patron=patron) if patron else "",
            "last_part": words["last_part"].format(patron=patron) if patron else "",
        }
        message = _CONFLICT_TEXTS[self._language][conflict].format(**values)
        zone = self.calendar.zone
        alert = protocol.Alert(
            id=str(uuid.uuid4()), type=OFFLINE_CONFLICT, at=call.now.astimezone(zone),
            message=message, data={
                "station": call.station, "conflict": conflict.value, "request_id": request.id,
                "op": request.op.value, "item": item,
                "title": copy.title if copy is not None else None,
                "patron": patron_code, "other_patron": other, "reason": reason,
                "station_at": request.at.astimezone(zone).isoformat(), "seq": seq,
                "applied": conflict not in NOT_APPLIED and seq is not None})
        self._sql.insert_alert.execute(call.db, {
            "alert_id": alert.id, "type": alert.type, "station": call.station,
            "at": call.now, "message": alert.message, "data": alert.data})
        call.alerts.append(alert)
        log.warning("offline conflict %s: %s", conflict.value, message)

    def _station_time(self, call: _Call) -> str:
        return call.request.at.astimezone(self.calendar.zone).strftime("%H:%M %d/%m/%Y")

    @staticmethod
    def _person(name: str | None, code: str | None) -> str:
        return f"{name} ({code})" if name else (code or "")

    def _set_copy_status(self, db: Db, copy_id: int, status: CopyStatus) -> None:
        self._sql.set_copy_status.execute(db, {"copy": copy_id, "new_status": status.value})

    # --- the idempotency record -----------------------------------------------------

    def _stored_reply(self, db: Db, request: protocol.Request,
                      station: str) -> protocol.Reply | None:
        row = self._sql.stored_reply.first(db, {"request_id": request.id})
        if row is None:
            return None
        if row.station != station or row.op != request.op.value:
            # Never hand one station's answer (a reader's name, their loans) to another.
            log.warning("request id %s from %s (%s) was already used by %s (%s)", request.id,
                        station, request.op.value, row.station, row.op)
            return self.bad_request(request.id, "this request id was already used")
        return protocol.Reply.model_validate(row.reply)

    def _answered_online(self, db: Db, request_id: str) -> bool:
        row = self._sql.stored_reply.first(db, {"request_id": request_id})
        return row is not None and row.offline is False

    def _read_stored_reply(self, request: protocol.Request,
                           station: str) -> protocol.Reply | None:
        with self._db.transaction() as db:
            return self._stored_reply(db, request, station)

    def _store_reply(self, db: Db, request: protocol.Request, station: str,
                     now: dt.datetime, reply: protocol.Reply) -> None:
        self._sql.insert_processed.execute(db, {
            "request_id": request.id, "station": station, "op": request.op.value,
            "reply": reply.model_dump(mode="json"), "server_at": now, "offline": request.offline})

    def _store_alone(self, request: protocol.Request, station: str, now: dt.datetime,
                     reply: protocol.Reply) -> protocol.Reply:
        """Store `reply` in a transaction of its own, after the first one rolled back."""
        try:
            with self._db.transaction() as db:
                stored = self._stored_reply(db, request, station)
                if stored is not None:
                    return stored
                self._store_reply(db, request, station, now, reply)
        except IntegrityError:
            stored = self._read_stored_reply(request, station)
            if stored is None:
                raise
            return stored
        return reply

    # --- words ----------------------------------------------------------------------

    def _failure(self, request_id: str, code: ErrorCode,
                 message: str | None = None) -> protocol.Reply:
        return protocol.Reply.failure(request_id, code,
                                      message or default_message(code, self._language))

    def _text(self, key: str, **values: object) -> str:
        return _TEXTS[self._language][key].format(**values)

    def _words(self, table: dict[str, dict[str, str]], key: str) -> str:
        return table[self._language].get(key, key)

    def _item_kind(self, kind: str) -> str:
        named = _ITEM_KINDS[self._language].get(kind)
        return f"{named} ({kind})" if named else kind

    def _refuse(self, code: ErrorCode, key: str | None = None, **values: object) -> NoReturn:
        message = self._text(key, **values) if key else default_message(code, self._language)
        raise _Refused(code, message)


__all__ = ["NOT_APPLIED", "OFFLINE_CONFLICT", "Circulation", "Conflict", "Outcome", "utc_now"]
