"""Borrowing and returning over a real broker, as a station meets it."""

from __future__ import annotations

import datetime as dt

from protocol import (
    CheckoutArgs,
    CheckoutResult,
    IdentifyArgs,
    IdentifyResult,
    ItemInfoArgs,
    ItemInfoResult,
    Op,
    RenewArgs,
    RenewResult,
    ReturnArgs,
    ReturnResult,
)


def checkout(link, patron: str, item: str):  # type: ignore[no-untyped-def]
    return link.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=patron, item=item))


def test_student_borrows_and_returns(library) -> None:
    kiosk = library.station()
    reply = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2025-0001"))
    assert reply.ok, reply
    who = reply.result_as(IdentifyResult)
    assert who.patron.name == "Nguyễn Văn An"
    assert who.patron.class_ == "6A1"
    assert who.loans == [] and who.blocks == [] and who.can_borrow == 3

    reply = checkout(kiosk, "HS-2025-0001", "TN00001")
    assert reply.ok, reply
    lent = reply.result_as(CheckoutResult)
    assert lent.title == "Dế Mèn phiêu lưu ký"
    assert lent.item == "TN.00001"
    # Saturday 21/11 + 8 days = Sunday 29/11 (closed) -> Monday 30/11 (holiday) -> Tuesday.
    assert lent.due == dt.date(2026, 12, 1)

    again = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2025-0001")).result_as(IdentifyResult)
    assert [(loan.item, loan.overdue) for loan in again.loans] == [("TN.00001", False)]
    assert again.can_borrow == 2

    info = kiosk.request(Op.ITEM_INFO, ItemInfoArgs(item="TN.00001")).result_as(ItemInfoResult)
    assert info.status == "on_loan" and info.due == dt.date(2026, 12, 1)

    back = kiosk.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001"))
    assert back.ok, back
    returned = back.result_as(ReturnResult)
    assert returned.title == "Dế Mèn phiêu lưu ký"
    assert (returned.was_overdue, returned.days_late) == (False, 0)
    assert library.ledger_count() == 2


def test_card_uid_and_moet_id_identify_the_same_reader(library) -> None:
    kiosk = library.station()
    by_uid = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="04a1b2c3")).result_as(IdentifyResult)
    by_moet = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="7901234561")).result_as(IdentifyResult)
    assert by_uid.patron.id == by_moet.patron.id == "HS-2025-0001"


def test_teacher_borrows_for_longer_and_teacher_books(library) -> None:
    kiosk = library.station()
    lent = checkout(kiosk, "GV-0001", "TN00002").result_as(CheckoutResult)
    assert lent.due == dt.date(2026, 12, 5)  # 14 days, a Saturday
    guide = checkout(kiosk, "GV-0001", "NV00001").result_as(CheckoutResult)
    assert guide.due == dt.date(2026, 12, 21)  # 30 days
    # A student may not take the teachers' professional books home.
    kiosk.request(Op.LOAN_RETURN, ReturnArgs(item="NV00001"))
    refused = checkout(kiosk, "HS-2025-0002", "NV00001")
    assert not refused.ok and refused.error.code == "item_not_loanable"


def test_textbooks_are_lent_for_the_school_year(library) -> None:
    kiosk = library.station()
    lent = checkout(kiosk, "HS-2025-0002", "GK00001").result_as(CheckoutResult)
    assert lent.due == dt.date(2027, 5, 31)  # a Monday, the last day of the school year


def test_refusals(library) -> None:
    kiosk = library.station()
    unknown = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-9999-9999"))
    assert not unknown.ok and unknown.error.code == "unknown_patron"
    assert unknown.error.message  # a sentence for the reader, in Vietnamese

    blocked = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2025-0003"))
    assert blocked.ok and blocked.result_as(IdentifyResult).blocks == ["blocked"]
    assert blocked.result_as(IdentifyResult).can_borrow == 0
    refused = checkout(kiosk, "HS-2025-0003", "TN00001")
    assert not refused.ok and refused.error.code == "patron_blocked"

    assert checkout(kiosk, "HS-2025-0001", "XX99999").error.code == "unknown_item"
    assert checkout(kiosk, "HS-2025-0001", "TK00003").error.code == "item_not_loanable"  # reference copy

    assert checkout(kiosk, "HS-2025-0001", "TN00001").ok
    assert checkout(kiosk, "HS-2025-0002", "TN00001").error.code == "item_on_loan"
    assert kiosk.request(Op.LOAN_RETURN, ReturnArgs(item="TN00002")).error.code == "item_not_on_loan"
    assert library.ledger_count() == 1


def test_limits_per_kind_and_in_total(library) -> None:
    kiosk = library.station()
    assert checkout(kiosk, "HS-2025-0001", "TN00001").ok
    assert checkout(kiosk, "HS-2025-0001", "TN00002").ok
    per_kind = checkout(kiosk, "HS-2025-0001", "TN00003")
    assert not per_kind.ok and per_kind.error.code == "limit_reached"
    assert checkout(kiosk, "HS-2025-0001", "TK00001").ok
    # Three short loans is the students' total; the per-kind limit of TK is 1 anyway, so
    # the total is shown by the identify result.
    who = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2025-0001")).result_as(IdentifyResult)
    assert who.can_borrow == 0
    assert checkout(kiosk, "HS-2025-0001", "TK00002").error.code == "limit_reached"
    # Long loans (textbooks) do not count towards the total.
    assert checkout(kiosk, "HS-2025-0001", "GK00001").ok


def test_renewal_and_its_limit(library) -> None:
    kiosk = library.station()
    assert checkout(kiosk, "HS-2025-0001", "TN00001").ok
    library.clock.advance(3)  # Tuesday 24/11
    renewed = kiosk.request(Op.LOAN_RENEW, RenewArgs(patron="HS-2025-0001", item="TN00001"))
    assert renewed.ok, renewed
    # 24/11 + 8 = Wednesday 2/12.
    assert renewed.result_as(RenewResult).due == dt.date(2026, 12, 2)
    again = kiosk.request(Op.LOAN_RENEW, RenewArgs(patron="HS-2025-0001", item="TN00001"))
    assert not again.ok and again.error.code == "renew_limit"
    other = kiosk.request(Op.LOAN_RENEW, RenewArgs(patron="HS-2025-0002", item="TN00001"))
    assert not other.ok and other.error.code == "item_not_on_loan"


def test_overdue_loan_blocks_and_return_reports_lateness(library) -> None:
    kiosk = library.station()
    assert checkout(kiosk, "HS-2025-0001", "TN00001").ok  # due Tuesday 1/12
    library.clock.advance(13)  # Friday 4/12: three days late
    who = kiosk.request(Op.PATRON_IDENTIFY, IdentifyArgs(card="HS-2025-0001")).result_as(IdentifyResult)
    assert who.blocks == ["overdue"] and who.loans[0].overdue
    assert checkout(kiosk, "HS-2025-0001", "TN00002").error.code == "patron_blocked"
    returned = kiosk.request(Op.LOAN_RETURN, ReturnArgs(item="TN00001")).result_as(ReturnResult)
    assert (returned.was_overdue, returned.days_late) == (True, 3)
    assert checkout(kiosk, "HS-2025-0001", "TN00002").ok
