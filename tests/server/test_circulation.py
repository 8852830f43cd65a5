"""The circulation core on a real SQLite file: every operation, rule and error path."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import types
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

import protocol
from protocol import ErrorCode
from server.circulation import Circulation
from server.config import ServerConfig
from server.db import make_engine, session_factory
from server.models import (
    Copy,
    CopyStatus,
    LedgerEntry,
    Loan,
    ProcessedRequest,
    Reader,
    ReaderStatus,
)

from circulation_sample import (
    AN,
    AN_CARD_UID,
    AN_MOET_ID,
    AN_PIN,
    BINH,
    BLOCK_REASON,
    BLOCKED,
    GK,
    HOA,
    INACTIVE,
    NV,
    TK,
    TK_LOST,
    TK_REFERENCE,
    TN,
    TN1_BARCODE,
    TN2_RFID,
    WallClock,
    Library,
    local,
    make_config,
    make_request,
)

D = dt.date
IDENTIFY, CHECKOUT, RETURN, RENEW, INFO = ("patron.identify", "loan.checkout", "loan.return",
                                           "loan.renew", "item.info")
END_OF_YEAR = D(2027, 5, 31)  # the last open day of the sample school year


def ok(reply: protocol.Reply, model: type[Any]) -> Any:
    assert reply.ok, reply.error
    return reply.result_as(model)


def refused(reply: protocol.Reply, code: ErrorCode) -> str:
    assert not reply.ok and reply.error is not None, reply.result
    assert reply.error.code == code, reply.error
    return reply.error.message


def borrow(ask: Any, patron: str, item: str) -> protocol.CheckoutResult:
    reply, _ = ask(CHECKOUT, patron=patron, item=item)
    return ok(reply, protocol.CheckoutResult)


# --- patron.identify ----------------------------------------------------------------

def test_identify_by_card_code_in_any_case(ask: Any) -> None:
    result = ok(ask(IDENTIFY, card="  hs-2024-0153 ")[0], protocol.IdentifyResult)
    assert result.patron == protocol.PatronInfo(id=AN, name="Nguyễn Văn An", kind="student",
                                                class_="6A1")
    assert result.loans == [] and result.blocks == [] and result.can_borrow == 3


def test_identify_by_moet_id_and_by_card_uid(ask: Any) -> None:
    assert ok(ask(IDENTIFY, card=AN_MOET_ID)[0], protocol.IdentifyResult).patron.id == AN
    # NFC readers differ in the case of the hex they print.
    assert ok(ask(IDENTIFY, card=AN_CARD_UID.lower())[0], protocol.IdentifyResult).patron.id == AN


def test_identify_finds_a_code_stored_in_lower_case(ask: Any, library: Library) -> None:
    with library.sessions.begin() as session:
        session.add(Reader(code="gv-0099", name="Đỗ Văn Em", kind="teacher",
                           created_at=local(2026, 9, 1)))
    assert ok(ask(IDENTIFY, card="GV-0099")[0], protocol.IdentifyResult).patron.id == "gv-0099"


def test_identify_unknown_card(ask: Any) -> None:
    message = refused(ask(IDENTIFY, card="HS-9999-0000")[0], ErrorCode.UNKNOWN_PATRON)
    assert "HS-9999-0000" in message


def test_identify_with_pin(ask: Any) -> None:
    assert ok(ask(IDENTIFY, card=AN, pin=AN_PIN)[0], protocol.IdentifyResult).patron.id == AN
    wrong = refused(ask(IDENTIFY, card=AN, pin="1357")[0], ErrorCode.WRONG_PIN)
    assert wrong == "Mã PIN không đúng."
    # A PIN is sent only to be checked (staff mode): a reader with no PIN set fails it.
    refused(ask(IDENTIFY, card=BINH, pin="1357")[0], ErrorCode.WRONG_PIN)
    assert ok(ask(IDENTIFY, card=BINH)[0], protocol.IdentifyResult).patron.id == BINH


def test_identify_with_a_damaged_pin_hash_is_an_internal_error(ask: Any, library: Library) -> None:
    with library.sessions.begin() as session:
        session.scalars(select(Reader).where(Reader.code == BINH)).one().pin_hash = "garbage"
    refused(ask(IDENTIFY, card=BINH, pin="1357")[0], ErrorCode.INTERNAL)
    assert library.count(ProcessedRequest) == 0


def test_identify_blocked_and_inactive_readers_answers_with_the_blocks(ask: Any) -> None:
    blocked = ok(ask(IDENTIFY, card=BLOCKED)[0], protocol.IdentifyResult)
    assert blocked.blocks == ["blocked"] and blocked.can_borrow == 0
    inactive = ok(ask(IDENTIFY, card=INACTIVE)[0], protocol.IdentifyResult)
    assert inactive.blocks == ["inactive"] and inactive.can_borrow == 0


def test_identify_lists_loans_and_counts_only_short_loans(ask: Any) -> None:
    borrow(ask, AN, TN[0])
    borrow(ask, AN, GK[0])  # a textbook for the year: not counted against the 3
    result = ok(ask(IDENTIFY, card=AN)[0], protocol.IdentifyResult)
    assert result.loans == [
        protocol.LoanLine(item=TN[0], title="Dế Mèn phiêu lưu ký", due=D(2026, 10, 12),
                          overdue=False),
        protocol.LoanLine(item=GK[0], title="Toán 6 tập một", due=END_OF_YEAR, overdue=False),
    ]
    assert result.can_borrow == 2


# --- loan.checkout ------------------------------------------------------------------

def test_checkout(ask: Any, library: Library, clock: WallClock) -> None:
    reply, entries = ask(CHECKOUT, patron=AN, item=TN[0], station="kiosk-2")
    assert ok(reply, protocol.CheckoutResult) == protocol.CheckoutResult(
        item=TN[0], title="Dế Mèn phiêu lưu ký", due=D(2026, 10, 12))
    assert library.copy_status(TN[0]) == CopyStatus.ON_LOAN
    loan = library.loan(TN[0])
    assert loan is not None and loan.due_on == D(2026, 10, 12) and not loan.long_loan
    [row] = library.ledger()
    assert (row.op, row.request_id, row.station, row.due_on) == ("checkout", reply.id, "kiosk-2",
                                                                 D(2026, 10, 12))
    assert loan.checkout_seq == row.seq
    [entry] = entries
    assert entry.seq == row.seq and entry.op == "checkout" and entry.item == TN[0]
    assert (entry.patron, entry.patron_kind, entry.patron_class) == (AN, "student", "6A1")
    assert entry.due == D(2026, 10, 12) and entry.days_late is None and not entry.offline
    assert entry.server_at == clock.now and entry.server_at.utcoffset() == dt.timedelta(hours=7)
    assert entry.codes == [TN1_BARCODE]  # what else a gate may read on this copy


def test_ledger_entries_carry_the_copys_other_codes(ask: Any) -> None:
    # A gate's on-loan set follows a copy by whatever its tag carries (RFID item id).
    _reply, [lent] = ask(CHECKOUT, patron=AN, item=TN2_RFID)
    _reply, [back] = ask(RETURN, item=TN[1])
    assert lent.item == back.item == TN[1]
    assert lent.codes == back.codes == [TN2_RFID]
    _reply, [plain] = ask(CHECKOUT, patron=AN, item=TN[2])
    assert plain.codes == []


def test_ledger_times_are_in_the_site_time_zone(library: Library, circulation: Circulation,
                                                clock: WallClock) -> None:
    at = dt.datetime(2026, 10, 4, 23, 50, tzinfo=dt.timezone.utc)
    request = make_request(CHECKOUT, at, offline=True, patron=AN, item=TN[0])
    reply, [entry] = circulation.handle(request, "kiosk-1")
    assert reply.ok
    assert entry.station_at == at and entry.station_at.utcoffset() == dt.timedelta(hours=7)
    assert entry.station_at.isoformat() == "2026-10-05T06:50:00+07:00"
    assert entry.offline and library.ledger()[0].offline


def test_checkout_due_date_skips_sunday(ask: Any) -> None:
    assert borrow(ask, AN, TK[0]).due == D(2026, 10, 12)  # 6 days from Monday is a Sunday


def test_checkout_long_loan_is_due_at_the_end_of_the_school_year(ask: Any,
                                                                 library: Library) -> None:
    assert borrow(ask, AN, GK[0]).due == END_OF_YEAR
    loan = library.loan(GK[0])
    assert loan is not None and loan.long_loan


def test_checkout_finds_items_by_barcode_rfid_and_accession_in_any_case(ask: Any) -> None:
    assert borrow(ask, HOA, TN1_BARCODE).item == TN[0]
    assert borrow(ask, HOA, TN2_RFID.lower()).item == TN[1]
    assert borrow(ask, HOA, TN[2].lower()).item == TN[2]


def test_checkout_patron_by_moet_id_and_card_uid(ask: Any, library: Library) -> None:
    borrow(ask, AN_MOET_ID, TN[0])
    borrow(ask, AN_CARD_UID, TN[1])
    with library.sessions() as session:
        readers = set(session.scalars(select(Reader.code).join(Loan, Loan.reader_id == Reader.id)))
    assert readers == {AN}


def test_checkout_unknown_patron(ask: Any, library: Library) -> None:
    refused(ask(CHECKOUT, patron="HS-0000", item=TN[0])[0], ErrorCode.UNKNOWN_PATRON)
    assert library.count(Loan) == 0 and library.count(LedgerEntry) == 0


def test_checkout_blocked_reader_is_told_why(ask: Any) -> None:
    message = refused(ask(CHECKOUT, patron=BLOCKED, item=TN[0])[0], ErrorCode.PATRON_BLOCKED)
    assert BLOCK_REASON in message
    message = refused(ask(CHECKOUT, patron=INACTIVE, item=TN[0])[0], ErrorCode.PATRON_BLOCKED)
    assert "không còn hiệu lực" in message


def test_checkout_blocked_comes_before_unknown_item(ask: Any) -> None:
    refused(ask(CHECKOUT, patron=BLOCKED, item="NO-SUCH-BOOK")[0], ErrorCode.PATRON_BLOCKED)


def test_checkout_unknown_item(ask: Any) -> None:
    message = refused(ask(CHECKOUT, patron=AN, item="TK.12345")[0], ErrorCode.UNKNOWN_ITEM)
    assert "TK.12345" in message


def test_checkout_item_on_loan_to_someone_else(ask: Any, library: Library) -> None:
    borrow(ask, AN, TN[0])
    message = refused(ask(CHECKOUT, patron=BINH, item=TN[0])[0], ErrorCode.ITEM_ON_LOAN)
    assert message == "Sách này đang được mượn."
    assert library.count(LedgerEntry) == 1


def test_checkout_item_already_on_loan_to_the_same_reader(ask: Any) -> None:
    borrow(ask, AN, TN[0])
    message = refused(ask(CHECKOUT, patron=AN, item=TN[0])[0], ErrorCode.ITEM_ON_LOAN)
    assert message == "Bạn đang mượn cuốn này rồi."


def test_checkout_reference_and_lost_copies_are_not_loanable(ask: Any) -> None:
    message = refused(ask(CHECKOUT, patron=HOA, item=TK_REFERENCE)[0], ErrorCode.ITEM_NOT_LOANABLE)
    assert "đọc tại thư viện" in message
    message = refused(ask(CHECKOUT, patron=HOA, item=TK_LOST)[0], ErrorCode.ITEM_NOT_LOANABLE)
    assert "mất" in message


def test_checkout_copy_marked_on_loan_without_a_loan_is_refused(ask: Any, library: Library) -> None:
    with library.sessions.begin() as session:
        session.scalars(select(Copy).where(Copy.accession_number == TN[0])).one().status = \
            CopyStatus.ON_LOAN
    refused(ask(CHECKOUT, patron=AN, item=TN[0])[0], ErrorCode.ITEM_ON_LOAN)
    assert library.count(Loan) == 0


def test_checkout_without_a_policy_for_the_pair(ask: Any) -> None:
    message = refused(ask(CHECKOUT, patron=AN, item=NV)[0], ErrorCode.ITEM_NOT_LOANABLE)
    assert message == "Học sinh không được mượn sách nghiệp vụ (NV) về nhà."
    assert borrow(ask, HOA, NV).due == D(2026, 11, 4)


def test_checkout_policy_allowing_no_items_means_not_loanable(library: Library,
                                                              clock: WallClock) -> None:
    config = make_config()
    config.circulation.policy[2].max_items = 0  # students: no children's books at all
    circulation = Circulation(library.sessions, config, clock)
    reply, _ = circulation.handle(make_request(CHECKOUT, clock.now, patron=AN, item=TN[0]),
                                  "kiosk-1")
    assert refused(reply, ErrorCode.ITEM_NOT_LOANABLE) == \
        "Học sinh không được mượn sách thiếu nhi (TN) về nhà."


def test_checkout_limit_per_item_kind(ask: Any, library: Library) -> None:
    borrow(ask, AN, TK[0])
    borrow(ask, AN, TK[1])
    message = refused(ask(CHECKOUT, patron=AN, item=TK[2])[0], ErrorCode.LIMIT_REACHED)
    assert message == "Bạn chỉ được mượn tối đa 2 cuốn sách tham khảo (TK) cùng lúc."
    assert library.count(Loan) == 2 and library.copy_status(TK[2]) == CopyStatus.AVAILABLE


def test_checkout_limit_of_short_loans_in_total(ask: Any) -> None:
    borrow(ask, AN, GK[1])  # textbooks for the year are long loans, outside the total
    borrow(ask, AN, TN[0])
    borrow(ask, AN, TN[1])
    borrow(ask, AN, TK[0])
    # Two TN of the three allowed: it is the total of 3 short loans that stops this one.
    message = refused(ask(CHECKOUT, patron=AN, item=TN[2])[0], ErrorCode.LIMIT_REACHED)
    assert "tối đa 3 cuốn cùng lúc" in message
    assert ok(ask(IDENTIFY, card=AN)[0], protocol.IdentifyResult).can_borrow == 0
    assert borrow(ask, AN, GK[0]).due == END_OF_YEAR


def test_without_a_total_for_the_kind_the_per_kind_limits_decide(library: Library,
                                                                  clock: WallClock) -> None:
    circulation = Circulation(library.sessions, make_config(max_loans={"student": 3}), clock)

    def ask(op: str, **args: Any) -> protocol.Reply:
        return circulation.handle(make_request(op, clock.now, **args), "kiosk-1")[0]

    # Teachers: TK 5 + NV 5 + TN 5 short loans; the GK long loans do not count.
    assert ok(ask(IDENTIFY, card=HOA), protocol.IdentifyResult).can_borrow == 15
    for item in (TN[0], TN[1], TK[0], GK[0]):
        assert ask(CHECKOUT, patron=HOA, item=item).ok
    assert ok(ask(IDENTIFY, card=HOA), protocol.IdentifyResult).can_borrow == 12


def test_checkout_limits_follow_the_reader_kind(ask: Any) -> None:
    for item in (TN[0], TN[1], TN[2], TK[0]):
        borrow(ask, HOA, item)
    assert ok(ask(IDENTIFY, card=HOA)[0], protocol.IdentifyResult).can_borrow == 6


def test_overdue_loan_blocks_until_returned(ask: Any, clock: WallClock) -> None:
    borrow(ask, AN, TN[0])  # due Monday 12/10
    clock.advance(days=8)   # Tuesday 13/10
    result = ok(ask(IDENTIFY, card=AN)[0], protocol.IdentifyResult)
    assert result.blocks == ["overdue"] and result.can_borrow == 0
    assert result.loans[0].overdue
    message = refused(ask(CHECKOUT, patron=AN, item=TN[1])[0], ErrorCode.PATRON_BLOCKED)
    assert TN[0] in message and "12/10/2026" in message
    returned = ok(ask(RETURN, item=TN[0])[0], protocol.ReturnResult)
    assert returned.was_overdue and returned.days_late == 1
    borrow(ask, AN, TN[1])


def test_due_day_itself_is_not_overdue(ask: Any, clock: WallClock) -> None:
    borrow(ask, AN, TN[0])
    clock.advance(days=7, hours=14)  # 23:00 on the due day, site time
    result = ok(ask(IDENTIFY, card=AN)[0], protocol.IdentifyResult)
    assert result.blocks == [] and not result.loans[0].overdue


@pytest.mark.parametrize(("after", "days_late", "blocked"),
                         [(3, 3, False), (3, 4, True), (None, 60, False)])
def test_overdue_block_threshold(library: Library, clock: WallClock, after: int | None,
                                 days_late: int, blocked: bool) -> None:
    circulation = Circulation(library.sessions, make_config(block_overdue_after_days=after), clock)

    def ask(op: str, **args: Any) -> protocol.Reply:
        return circulation.handle(make_request(op, clock.now, **args), "kiosk-1")[0]

    assert ask(CHECKOUT, patron=AN, item=TN[0]).ok   # due 12/10
    clock.now = local(2026, 10, 12) + dt.timedelta(days=days_late)
    result = ok(ask(IDENTIFY, card=AN), protocol.IdentifyResult)
    assert result.loans[0].overdue
    assert (result.blocks == ["overdue"]) is blocked
    assert ask(CHECKOUT, patron=AN, item=TN[1]).ok is not blocked


# --- loan.return --------------------------------------------------------------------

def test_return_on_time(ask: Any, library: Library, clock: WallClock) -> None:
    borrow(ask, AN, TN[0])
    clock.advance(days=3)
    reply, [entry] = ask(RETURN, item=TN1_BARCODE, station="returnbox-1")
    assert ok(reply, protocol.ReturnResult) == protocol.ReturnResult(
        item=TN[0], title="Dế Mèn phiêu lưu ký", was_overdue=False, days_late=0)
    assert library.loan(TN[0]) is None and library.copy_status(TN[0]) == CopyStatus.AVAILABLE
    assert (entry.op, entry.patron, entry.station, entry.days_late) == ("return", AN,
                                                                       "returnbox-1", 0)
    assert [row.op for row in library.ledger()] == ["checkout", "return"]


def test_return_late_counts_calendar_days(ask: Any, clock: WallClock) -> None:
    borrow(ask, AN, TN[0])  # due 12/10
    clock.now = local(2026, 10, 19)
    result = ok(ask(RETURN, item=TN[0])[0], protocol.ReturnResult)
    assert result.was_overdue and result.days_late == 7


def test_return_unknown_item_and_item_not_on_loan(ask: Any, library: Library) -> None:
    refused(ask(RETURN, item="XX-1")[0], ErrorCode.UNKNOWN_ITEM)
    assert refused(ask(RETURN, item=TN[0])[0], ErrorCode.ITEM_NOT_ON_LOAN) == \
        "Sách này chưa được mượn."
    assert library.count(LedgerEntry) == 0


# --- loan.renew ---------------------------------------------------------------------

def test_renew_then_renew_limit(ask: Any, library: Library, clock: WallClock) -> None:
    borrow(ask, AN, TK[0])  # due 12/10; one renewal allowed
    clock.now = local(2026, 10, 9)
    reply, [entry] = ask(RENEW, patron=AN, item=TK[0])
    assert ok(reply, protocol.RenewResult) == protocol.RenewResult(
        item=TK[0], due=D(2026, 10, 15), title="Tuyển tập đề thi Toán 6")
    assert entry.op == "renew" and entry.due == D(2026, 10, 15)
    loan = library.loan(TK[0])
    assert loan is not None and loan.renewals == 1 and loan.due_on == D(2026, 10, 15)
    message = refused(ask(RENEW, patron=AN, item=TK[0])[0], ErrorCode.RENEW_LIMIT)
    assert "1 lần" in message and "15/10/2026" in message
    assert [row.op for row in library.ledger()] == ["checkout", "renew"]


def test_renew_never_brings_the_due_date_forward(library: Library, clock: WallClock,
                                                 circulation: Circulation) -> None:
    assert circulation.handle(make_request(CHECKOUT, clock.now, patron=AN, item=TN[0]),
                              "kiosk-1")[0].ok  # 7 days: due 12/10
    shorter = make_config()
    shorter.circulation.policy[2].loan_days = 2  # the school shortened TN loans since
    renewing = Circulation(library.sessions, shorter, clock)
    reply, _ = renewing.handle(make_request(RENEW, clock.now, patron=AN, item=TN[0]), "kiosk-1")
    assert ok(reply, protocol.RenewResult).due == D(2026, 10, 12)


def test_renew_where_the_policy_allows_none(library: Library, clock: WallClock) -> None:
    config = make_config()
    config.circulation.policy[2].renewals = 0
    circulation = Circulation(library.sessions, config, clock)
    assert circulation.handle(make_request(CHECKOUT, clock.now, patron=AN, item=TN[0]),
                              "kiosk-1")[0].ok
    reply, _ = circulation.handle(make_request(RENEW, clock.now, patron=AN, item=TN[0]),
                                  "kiosk-1")
    assert refused(reply, ErrorCode.RENEW_LIMIT) == \
        "Sách loại này không được gia hạn. Hạn trả: 12/10/2026."


def test_renew_long_loan_is_refused(ask: Any) -> None:
    borrow(ask, AN, GK[0])
    message = refused(ask(RENEW, patron=AN, item=GK[0])[0], ErrorCode.RENEW_LIMIT)
    assert "dài hạn" in message and "31/05/2027" in message


def test_renew_item_of_another_reader_or_not_on_loan(ask: Any) -> None:
    borrow(ask, AN, TN[0])
    assert refused(ask(RENEW, patron=BINH, item=TN[0])[0], ErrorCode.ITEM_NOT_ON_LOAN) == \
        "Cuốn sách này không có trong danh sách bạn đang mượn."
    refused(ask(RENEW, patron=AN, item=TN[1])[0], ErrorCode.ITEM_NOT_ON_LOAN)


def test_renew_unknown_patron_or_item(ask: Any) -> None:
    refused(ask(RENEW, patron="HS-0000", item=TN[0])[0], ErrorCode.UNKNOWN_PATRON)
    refused(ask(RENEW, patron=AN, item="XX-1")[0], ErrorCode.UNKNOWN_ITEM)


def test_renew_by_a_blocked_reader(ask: Any, library: Library, clock: WallClock) -> None:
    borrow(ask, AN, TN[0])
    library.set_reader_status(AN, ReaderStatus.BLOCKED)
    refused(ask(RENEW, patron=AN, item=TN[0])[0], ErrorCode.PATRON_BLOCKED)
    library.set_reader_status(AN, ReaderStatus.ACTIVE)
    clock.advance(days=9)  # now overdue: an overdue book is returned, not renewed
    refused(ask(RENEW, patron=AN, item=TN[0])[0], ErrorCode.PATRON_BLOCKED)
    assert library.count(LedgerEntry) == 1


# --- item.info ----------------------------------------------------------------------

def test_item_info(ask: Any) -> None:
    assert ok(ask(INFO, item=TK_REFERENCE)[0], protocol.ItemInfoResult) == protocol.ItemInfoResult(
        item=TK_REFERENCE, title="Từ điển Tiếng Việt", status="reference", due=None)
    borrow(ask, AN, TN[0])
    info = ok(ask(INFO, item=TN2_RFID)[0], protocol.ItemInfoResult)
    assert (info.item, info.status, info.due) == (TN[1], "available", None)
    info = ok(ask(INFO, item=TN1_BARCODE)[0], protocol.ItemInfoResult)
    assert (info.item, info.status, info.due) == (TN[0], "on_loan", D(2026, 10, 12))
    refused(ask(INFO, item="XX-1")[0], ErrorCode.UNKNOWN_ITEM)


# --- at most once -------------------------------------------------------------------

def test_same_request_id_twice_is_applied_once(ask: Any, library: Library, clock: WallClock) -> None:
    first, entries = ask(CHECKOUT, request_id="req-1", patron=AN, item=TN[0])
    clock.advance(days=1)
    again, replayed = ask(CHECKOUT, request_id="req-1", patron=AN, item=TN[0])
    assert first.ok and again == first and len(entries) == 1 and replayed == []
    assert library.count(LedgerEntry) == 1 and library.count(Loan) == 1
    assert library.count(ProcessedRequest) == 1


def test_a_replay_is_answered_from_the_record_without_running_the_rules(
        ask: Any, library: Library, circulation: Circulation,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = ask(CHECKOUT, request_id="req-1b", patron=AN, item=TN[0])
    assert ok(ask(RETURN, item=TN[0])[0], protocol.ReturnResult).days_late == 0

    def no_rules(*args: Any, **kwargs: Any) -> D:
        raise AssertionError("the rules ran again for a replayed request")

    monkeypatch.setattr(circulation.calendar, "due_date", no_rules)
    again, replayed = ask(CHECKOUT, request_id="req-1b", patron=AN, item=TN[0])
    assert again == first and replayed == []
    assert library.loan(TN[0]) is None and library.count(LedgerEntry) == 2


def test_refusals_are_stored_and_replayed_too(ask: Any) -> None:
    first, _ = ask(CHECKOUT, request_id="req-2", patron=AN, item=NV)
    again, _ = ask(CHECKOUT, request_id="req-2", patron=AN, item=NV)
    assert again == first and again.error is not None
    assert again.error.code == ErrorCode.ITEM_NOT_LOANABLE


def test_request_id_answered_meanwhile_by_another_process(
        ask: Any, library: Library, circulation: Circulation,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = ask(CHECKOUT, request_id="req-3", patron=AN, item=TN[0])
    original = circulation._stored_reply
    calls = []

    def missed_once(*args: Any) -> protocol.Reply | None:
        # The first look-up misses, as if the other process had not committed yet.
        calls.append(args)
        return None if len(calls) == 1 else original(*args)

    monkeypatch.setattr(circulation, "_stored_reply", missed_once)
    again, entries = ask(CHECKOUT, request_id="req-3", patron=AN, item=TN[0])
    assert len(calls) == 2 and again == first and entries == []
    assert library.count(LedgerEntry) == 1 and library.count(ProcessedRequest) == 1


def test_request_id_reused_by_another_station_gets_nothing_of_the_first(ask: Any) -> None:
    first, _ = ask(IDENTIFY, request_id="req-4", card=AN)
    assert first.ok
    other, _ = ask(IDENTIFY, request_id="req-4", station="kiosk-9", card=AN)
    assert refused(other, ErrorCode.BAD_REQUEST) and other.result is None


def test_two_servers_lending_one_copy_exactly_one_wins(library: Library, config: ServerConfig,
                                                       clock: WallClock) -> None:
    engines = [make_engine(library.url) for _ in range(2)]
    servers = [Circulation(session_factory(engine), config, clock) for engine in engines]
    barrier = threading.Barrier(2)
    replies: dict[str, protocol.Reply] = {}

    def lend(server: Circulation, patron: str) -> None:
        request = make_request(CHECKOUT, clock.now, patron=patron, item=TN[0])
        barrier.wait()
        replies[patron] = server.handle(request, f"kiosk-{patron[-1]}")[0]

    try:
        threads = [threading.Thread(target=lend, args=(server, patron))
                   for server, patron in zip(servers, (AN, BINH))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for engine in engines:
            engine.dispose()
    assert sorted(reply.ok for reply in replies.values()) == [False, True]
    [loser] = [reply for reply in replies.values() if not reply.ok]
    refused(loser, ErrorCode.ITEM_ON_LOAN)
    assert library.count(Loan) == 1 and library.count(LedgerEntry) == 1


def test_losing_the_race_at_the_loan_insert_answers_item_on_loan(
        ask: Any, library: Library, circulation: Circulation,
        monkeypatch: pytest.MonkeyPatch) -> None:
    borrow(ask, AN, TN[0])
    original = circulation._copy

    def stale(db: Any, item: str) -> Any:
        # What a transaction that read before the winner committed would see.
        row = original(db, item)._asdict()
        row.update(loan_id=None, reader_id=None, status="available")
        return types.SimpleNamespace(**row)

    monkeypatch.setattr(circulation, "_copy", stale)
    reply, entries = ask(CHECKOUT, request_id="req-5", patron=BINH, item=TN[0])
    refused(reply, ErrorCode.ITEM_ON_LOAN)
    assert entries == [] and library.count(LedgerEntry) == 1
    loan = library.loan(TN[0])
    assert loan is not None and loan.renewals == 0
    monkeypatch.undo()
    assert ask(CHECKOUT, request_id="req-5", patron=BINH, item=TN[0])[0] == reply  # stored


def test_return_racing_another_return_answers_item_not_on_loan(
        ask: Any, library: Library, circulation: Circulation,
        monkeypatch: pytest.MonkeyPatch) -> None:
    borrow(ask, AN, TN[0])
    with library.engine.connect() as connection:
        before_return = circulation._copy(connection, TN[0])  # still shows the loan
    assert ask(RETURN, item=TN[0])[0].ok
    monkeypatch.setattr(circulation, "_copy", lambda db, item: before_return)
    reply, entries = ask(RETURN, item=TN[0])
    refused(reply, ErrorCode.ITEM_NOT_ON_LOAN)
    assert entries == [] and [row.op for row in library.ledger()] == ["checkout", "return"]


def test_renewal_racing_another_renewal_changes_nothing(
        ask: Any, library: Library, circulation: Circulation, clock: WallClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    borrow(ask, AN, TN[0])
    with library.engine.connect() as connection:
        before_renewal = circulation._copy(connection, TN[0])  # renewals = 0
    clock.advance(days=2)
    assert ask(RENEW, patron=AN, item=TN[0])[0].ok
    monkeypatch.setattr(circulation, "_copy", lambda db, item: before_renewal)
    reply, entries = ask(RENEW, patron=AN, item=TN[0])
    refused(reply, ErrorCode.INTERNAL)  # not stored: the station's retry gets a true answer
    assert entries == [] and [row.op for row in library.ledger()] == ["checkout", "renew"]
    loan = library.loan(TN[0])
    assert loan is not None and loan.renewals == 1


# --- the ledger and failures --------------------------------------------------------

def test_ledger_is_append_only(ask: Any, library: Library) -> None:
    borrow(ask, AN, TN[0])
    for statement in ("UPDATE ledger_entries SET station = 'forged'", "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"):
            with library.engine.begin() as connection:
                connection.exec_driver_sql(statement)
    [row] = library.ledger()
    assert row.station == "kiosk-1"


def test_unexpected_error_answers_internal_changes_nothing_and_can_be_retried(
        ask: Any, library: Library, circulation: Circulation,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any, **kwargs: Any) -> D:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(circulation.calendar, "due_date", broken)
    with caplog.at_level(logging.ERROR, logger="server.circulation"):
        reply, entries = ask(CHECKOUT, request_id="req-6", patron=AN, item=TN[0])
    assert refused(reply, ErrorCode.INTERNAL) and entries == []
    assert "disk on fire" in caplog.text and "Traceback" in caplog.text
    assert library.count(Loan) == 0 and library.count(LedgerEntry) == 0
    assert library.count(ProcessedRequest) == 0
    assert library.copy_status(TN[0]) == CopyStatus.AVAILABLE
    monkeypatch.undo()
    retried, _ = ask(CHECKOUT, request_id="req-6", patron=AN, item=TN[0])
    assert ok(retried, protocol.CheckoutResult).item == TN[0]


def test_a_broken_clock_cannot_escape_handle(library: Library, config: ServerConfig) -> None:
    def clock() -> dt.datetime:
        raise OSError("no clock")

    circulation = Circulation(library.sessions, config, clock)
    request = make_request(CHECKOUT, local(2026, 10, 5), patron=AN, item=TN[0])
    refused(circulation.handle(request, "kiosk-1")[0], ErrorCode.INTERNAL)


def test_bad_request_reply(circulation: Circulation) -> None:
    reply = circulation.bad_request("req-7", "args.item: Field required")
    message = refused(reply, ErrorCode.BAD_REQUEST)
    assert reply.id == "req-7" and "args.item: Field required" in message


def test_messages_in_english(library: Library, clock: WallClock) -> None:
    circulation = Circulation(library.sessions, make_config(language="en"), clock)

    def ask(op: str, **args: Any) -> protocol.Reply:
        return circulation.handle(make_request(op, clock.now, **args), "kiosk-1")[0]

    assert ask(CHECKOUT, patron=AN, item=TK[0]).ok
    assert ask(CHECKOUT, patron=AN, item=TK[1]).ok
    assert refused(ask(CHECKOUT, patron=AN, item=TK[2]), ErrorCode.LIMIT_REACHED) == \
        "You may have at most 2 reference books (TK) on loan at once."
    assert refused(ask(CHECKOUT, patron=AN, item=TK[0]), ErrorCode.ITEM_ON_LOAN) == \
        "You already have this book on loan."
    assert refused(ask(IDENTIFY, card=AN, pin="0000"), ErrorCode.WRONG_PIN) == "The PIN is wrong."
