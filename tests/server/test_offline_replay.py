"""Offline replays on a real SQLite file: the station's time, exactly once, and every
conflict rule with its ledger mark and its alert."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

import protocol
from protocol import ErrorCode
from server.circulation import NOT_APPLIED, OFFLINE_CONFLICT, Circulation, Conflict, Outcome
from server.config import ServerConfig
from server.models import Alert, CopyStatus, LedgerEntry, Loan

from circulation_sample import (
    AN,
    BINH,
    BLOCKED,
    TK_REFERENCE,
    TN,
    WallClock,
    Library,
    local,
    make_config,
    make_request,
)

D = dt.date
CHECKOUT, RETURN, RENEW, IDENTIFY = "loan.checkout", "loan.return", "loan.renew", "patron.identify"
AN_NAME, BINH_NAME, BLOCKED_NAME = "Nguyễn Văn An", "Trần Thị Bình", "Phạm Minh Châu"
DE_MEN = "Dế Mèn phiêu lưu ký"


def send(circulation: Circulation, op: str, at: dt.datetime, *, offline: bool = True,
         request_id: str | None = None, station: str = "kiosk-1", **args: Any) -> Outcome:
    return circulation.handle_request(
        make_request(op, at, request_id=request_id, offline=offline, **args), station)


def online(circulation: Circulation, clock: WallClock, op: str, **args: Any) -> Outcome:
    outcome = send(circulation, op, clock.now, offline=False, station="desk-1", **args)
    assert outcome.reply.ok, outcome.reply.error
    return outcome


def alerts(library: Library) -> list[Alert]:
    with library.sessions() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def only_alert(outcome: Outcome, conflict: Conflict) -> protocol.Alert:
    [alert] = outcome.alerts
    assert alert.type == OFFLINE_CONFLICT
    assert alert.data["conflict"] == conflict.value
    assert alert.data["station"] == "kiosk-1" and "kiosk-1" in alert.message
    return alert


def refused(outcome: Outcome, code: ErrorCode) -> None:
    assert not outcome.reply.ok and outcome.reply.error is not None, outcome.reply
    assert outcome.reply.error.code == code, outcome.reply.error


# --- applied at the station's time ------------------------------------------------------

def test_offline_checkout_is_due_from_the_stations_time(circulation: Circulation,
                                                         clock: WallClock,
                                                         library: Library) -> None:
    at = local(2026, 10, 3, 10, 15)  # Saturday; the server hears of it on Monday
    outcome = send(circulation, CHECKOUT, at, patron=AN, item=TN[0])
    assert outcome.reply.result_as(protocol.CheckoutResult).due == D(2026, 10, 10)
    assert outcome.alerts == []
    [entry] = outcome.entries
    assert entry.offline and entry.conflict is None
    assert entry.station_at == at and entry.server_at == clock.now
    [row] = library.ledger()
    assert row.offline and row.conflict is None
    assert row.station_at == at and row.server_at == clock.now
    loan = library.loan(TN[0])
    assert loan is not None and loan.loaned_at == at and loan.due_on == D(2026, 10, 10)


def test_online_checkout_is_due_from_the_servers_time(circulation: Circulation,
                                                       clock: WallClock) -> None:
    # The same request online: the station's `at` does not move the due date.
    outcome = send(circulation, CHECKOUT, local(2026, 10, 3), offline=False,
                   patron=AN, item=TN[0])
    assert outcome.reply.result_as(protocol.CheckoutResult).due == D(2026, 10, 12)


def test_offline_return_counts_days_late_to_the_stations_time(circulation: Circulation,
                                                               clock: WallClock) -> None:
    online(circulation, clock, CHECKOUT, patron=AN, item=TN[0])  # due Monday 12/10
    clock.advance(days=15)
    outcome = send(circulation, RETURN, local(2026, 10, 14, 16), item=TN[0])
    result = outcome.reply.result_as(protocol.ReturnResult)
    assert result.days_late == 2 and result.was_overdue
    assert outcome.entries[0].days_late == 2 and outcome.entries[0].conflict is None


def test_offline_time_in_the_future_is_taken_as_now(circulation: Circulation,
                                                     clock: WallClock) -> None:
    # A station clock running a week ahead must not push the due date out.
    outcome = send(circulation, CHECKOUT, clock.now + dt.timedelta(days=7), patron=AN, item=TN[0])
    assert outcome.reply.result_as(protocol.CheckoutResult).due == D(2026, 10, 12)


def test_offline_replay_is_applied_once_even_after_a_restart(
        circulation: Circulation, clock: WallClock, library: Library,
        config: ServerConfig) -> None:
    at = local(2026, 10, 3)
    first = send(circulation, CHECKOUT, at, request_id="outbox-1", patron=BLOCKED, item=TN[0])
    assert first.reply.ok and len(first.entries) == 1 and len(first.alerts) == 1
    again = send(circulation, CHECKOUT, at, request_id="outbox-1", patron=BLOCKED, item=TN[0])
    assert again.reply == first.reply and again.repeated
    assert again.entries == [] and again.alerts == []
    clock.advance(days=1)
    restarted = Circulation(library.sessions, config, clock)
    after = send(restarted, CHECKOUT, at, request_id="outbox-1", patron=BLOCKED, item=TN[0])
    assert after.reply == first.reply and after.repeated
    assert len(library.ledger()) == 1 and len(alerts(library)) == 1


# --- conflicts of an offline checkout -------------------------------------------------

def test_checkout_of_a_copy_lent_to_someone_else_is_recorded_not_applied(
        circulation: Circulation, clock: WallClock, library: Library) -> None:
    online(circulation, clock, CHECKOUT, patron=BINH, item=TN[0])
    outcome = send(circulation, CHECKOUT, local(2026, 10, 3), patron=AN, item=TN[0])
    refused(outcome, ErrorCode.ITEM_ON_LOAN)
    [entry] = outcome.entries
    assert entry.op == "checkout" and entry.patron == AN and entry.offline
    assert entry.conflict == Conflict.ON_LOAN_TO_OTHER.value and entry.due is None
    loan = library.loan(TN[0])
    assert loan is not None and loan.reader_id == 2  # still Bình's
    alert = only_alert(outcome, Conflict.ON_LOAN_TO_OTHER)
    for words in (AN_NAME, AN, TN[0], DE_MEN, BINH_NAME, "ngoại tuyến", "03/10/2026"):
        assert words in alert.message
    assert alert.data["patron"] == AN and alert.data["other_patron"] == f"{BINH_NAME} ({BINH})"
    assert alert.data["seq"] == entry.seq and alert.data["applied"] is False
    [row] = alerts(library)
    assert (row.alert_id, row.type, row.station, row.message) == \
        (alert.id, OFFLINE_CONFLICT, "kiosk-1", alert.message)
    assert row.acknowledged_at is None and row.event_id is None
    assert library.ledger()[-1].conflict == "on_loan_to_other"


def test_checkout_by_a_blocked_reader_is_applied_and_marked(
        circulation: Circulation, library: Library) -> None:
    outcome = send(circulation, CHECKOUT, local(2026, 10, 3), patron=BLOCKED, item=TN[0])
    assert outcome.reply.ok
    assert outcome.entries[0].conflict == Conflict.READER_BLOCKED.value
    assert library.loan(TN[0]) is not None and library.copy_status(TN[0]) == CopyStatus.ON_LOAN
    alert = only_alert(outcome, Conflict.READER_BLOCKED)
    assert BLOCKED_NAME in alert.message and "Làm mất sách" in alert.message
    assert alert.data["applied"] is True


def test_checkout_over_the_limit_is_applied_and_marked(
        circulation: Circulation, clock: WallClock, library: Library) -> None:
    for item in TN[:3]:
        online(circulation, clock, CHECKOUT, patron=AN, item=item)
    outcome = send(circulation, CHECKOUT, clock.now - dt.timedelta(hours=1), patron=AN, item=TN[3])
    assert outcome.reply.ok
    assert outcome.entries[0].conflict == Conflict.LIMIT_REACHED.value
    assert library.loan(TN[3]) is not None
    alert = only_alert(outcome, Conflict.LIMIT_REACHED)
    assert "tối đa 3" in alert.message and AN_NAME in alert.message


def test_checkout_of_a_reference_copy_is_recorded_not_applied(
        circulation: Circulation, library: Library) -> None:
    outcome = send(circulation, CHECKOUT, local(2026, 10, 3), patron=AN, item=TK_REFERENCE)
    refused(outcome, ErrorCode.ITEM_NOT_LOANABLE)
    assert outcome.entries[0].conflict == Conflict.NOT_LOANABLE.value
    assert library.loan(TK_REFERENCE) is None
    assert library.copy_status(TK_REFERENCE) == CopyStatus.REFERENCE
    only_alert(outcome, Conflict.NOT_LOANABLE)


def test_checkout_already_lent_to_the_same_reader_changes_nothing(
        circulation: Circulation, clock: WallClock, library: Library) -> None:
    lent = online(circulation, clock, CHECKOUT, patron=AN, item=TN[0])
    outcome = send(circulation, CHECKOUT, local(2026, 10, 3), patron=AN, item=TN[0])
    assert outcome.reply.ok and outcome.entries == [] and outcome.alerts == []
    assert outcome.reply.result_as(protocol.CheckoutResult).due == lent.entries[0].due
    assert len(library.ledger()) == 1


# --- conflicts of an offline return ---------------------------------------------------

def test_return_of_a_copy_not_on_loan_is_recorded_against_its_last_borrower(
        circulation: Circulation, clock: WallClock, library: Library) -> None:
    online(circulation, clock, CHECKOUT, patron=AN, item=TN[0])
    online(circulation, clock, RETURN, item=TN[0])
    outcome = send(circulation, RETURN, clock.now, item=TN[0])
    refused(outcome, ErrorCode.ITEM_NOT_ON_LOAN)
    [entry] = outcome.entries
    assert entry.op == "return" and entry.patron == AN
    assert entry.conflict == Conflict.NOT_ON_LOAN.value and entry.days_late is None
    assert library.loan(TN[0]) is None and library.copy_status(TN[0]) == CopyStatus.AVAILABLE
    alert = only_alert(outcome, Conflict.NOT_ON_LOAN)
    assert AN_NAME in alert.message and DE_MEN in alert.message


def test_return_of_a_copy_never_lent_raises_an_alert_without_an_entry(
        circulation: Circulation, library: Library) -> None:
    outcome = send(circulation, RETURN, local(2026, 10, 3), item=TN[4])
    refused(outcome, ErrorCode.ITEM_NOT_ON_LOAN)
    assert outcome.entries == [] and library.ledger() == []
    alert = only_alert(outcome, Conflict.NOT_ON_LOAN)
    assert alert.data["seq"] is None and alert.data["patron"] is None
    assert len(alerts(library)) == 1


def test_return_made_before_the_copy_was_lent_again_leaves_the_new_loan(
        circulation: Circulation, clock: WallClock, library: Library) -> None:
    online(circulation, clock, CHECKOUT, patron=AN, item=TN[0])        # 09:00
    returned_at = clock.now + dt.timedelta(hours=1)                      # 10:00 at the kiosk
    clock.advance(hours=2)
    online(circulation, clock, RETURN, item=TN[0])                     # 11:00 at the desk
    online(circulation, clock, CHECKOUT, patron=BINH, item=TN[0])      # 11:00 to Bình
    clock.advance(hours=1)
    outcome = send(circulation, RETURN, returned_at, item=TN[0])
    refused(outcome, ErrorCode.ITEM_NOT_ON_LOAN)
    [entry] = outcome.entries
    assert entry.conflict == Conflict.LENT_AGAIN.value and entry.patron == AN
    loan = library.loan(TN[0])
    assert loan is not None and loan.reader_id == 2
    alert = only_alert(outcome, Conflict.LENT_AGAIN)
    assert AN_NAME in alert.message and BINH_NAME in alert.message


def test_return_made_after_the_current_loan_began_is_applied(
        circulation: Circulation, clock: WallClock, library: Library) -> None:
    online(circulation, clock, CHECKOUT, patron=AN, item=TN[0])
    outcome = send(circulation, RETURN, clock.now + dt.timedelta(minutes=30), item=TN[0])
    assert outcome.reply.ok and outcome.alerts == []
    assert outcome.entries[0].conflict is None and library.loan(TN[0]) is None


# --- what no ledger entry can name ----------------------------------------------------

@pytest.mark.parametrize(("op", "args", "code", "conflict"), [
    (CHECKOUT, {"patron": AN, "item": "TN.99999"}, ErrorCode.UNKNOWN_ITEM, Conflict.UNKNOWN_ITEM),
    (CHECKOUT, {"patron": "HS-0000-0000", "item": TN[0]}, ErrorCode.UNKNOWN_PATRON,
     Conflict.UNKNOWN_PATRON),
    (RETURN, {"item": "TN.99999"}, ErrorCode.UNKNOWN_ITEM, Conflict.UNKNOWN_ITEM),
])
def test_unknown_item_or_reader_offline_raises_an_alert(
        circulation: Circulation, library: Library, op: str, args: dict[str, str],
        code: ErrorCode, conflict: Conflict) -> None:
    outcome = send(circulation, op, local(2026, 10, 3), **args)
    refused(outcome, code)
    assert outcome.entries == [] and library.ledger() == []
    alert = only_alert(outcome, conflict)
    assert args["item"] in alert.message
    if "patron" in args:
        assert args["patron"] in alert.message or AN_NAME in alert.message
    assert [row.alert_id for row in alerts(library)] == [alert.id]
    assert library.loan(TN[0]) is None


def test_offline_renewal_refused_raises_an_alert(circulation: Circulation,
                                                 library: Library) -> None:
    outcome = send(circulation, RENEW, local(2026, 10, 3), patron=AN, item=TN[0])
    refused(outcome, ErrorCode.ITEM_NOT_ON_LOAN)
    alert = only_alert(outcome, Conflict.REFUSED)
    assert "gia hạn" in alert.message and TN[0] in alert.message


def test_offline_reads_and_online_refusals_raise_no_alert(circulation: Circulation,
                                                           clock: WallClock,
                                                           library: Library) -> None:
    refused(send(circulation, IDENTIFY, local(2026, 10, 3), card="HS-0000-0000"),
            ErrorCode.UNKNOWN_PATRON)
    refused(send(circulation, CHECKOUT, clock.now, offline=False, patron=BLOCKED, item=TN[0]),
            ErrorCode.PATRON_BLOCKED)
    refused(send(circulation, RETURN, clock.now, offline=False, item=TN[0]),
            ErrorCode.ITEM_NOT_ON_LOAN)
    assert alerts(library) == [] and library.ledger() == []


def test_conflict_messages_in_english(library: Library, clock: WallClock) -> None:
    english = Circulation(library.sessions, make_config("en"), clock)
    outcome = send(english, CHECKOUT, local(2026, 10, 3), patron=BLOCKED, item=TN[0])
    alert = only_alert(outcome, Conflict.READER_BLOCKED)
    assert alert.message.startswith("Station kiosk-1 (offline, at 09:00 03/10/2026): lent")
    assert "blocked" in alert.message


def test_every_stored_conflict_is_a_conflict_value(circulation: Circulation,
                                                   clock: WallClock, library: Library) -> None:
    online(circulation, clock, CHECKOUT, patron=BINH, item=TN[0])
    send(circulation, CHECKOUT, clock.now, patron=AN, item=TN[0])
    send(circulation, CHECKOUT, clock.now, patron=BLOCKED, item=TN[1])
    send(circulation, RETURN, clock.now, item=TN[2])
    with library.sessions() as session:
        marks = set(session.scalars(select(LedgerEntry.conflict)))
        loans = session.scalar(select(Loan).where(Loan.reader_id == 4))
    assert marks == {None, "on_loan_to_other", "reader_blocked"}
    assert {Conflict(mark) for mark in marks if mark} <= set(Conflict)
    assert loans is not None  # the blocked reader's loan was applied
    assert Conflict.ON_LOAN_TO_OTHER in NOT_APPLIED and Conflict.READER_BLOCKED not in NOT_APPLIED
    assert len(alerts(library)) == 3


def test_an_online_refusal_replayed_offline_raises_one_alert(circulation: Circulation,
                                                             clock: WallClock,
                                                             library: Library) -> None:
    # The station's live try was refused, but its reply was lost: the reader heard
    # "recorded offline", and the outbox replays the same id, offline.
    online(circulation, clock, CHECKOUT, patron=BINH, item=TN[0])
    first = send(circulation, CHECKOUT, clock.now, offline=False, request_id="lost-reply",
                 patron=AN, item=TN[0])
    refused(first, ErrorCode.ITEM_ON_LOAN)
    assert first.alerts == []  # online, the kiosk heard nothing: no alert yet
    replay = send(circulation, CHECKOUT, clock.now, request_id="lost-reply", patron=AN, item=TN[0])
    refused(replay, ErrorCode.ITEM_ON_LOAN)
    assert replay.repeated and replay.entries == []
    alert = only_alert(replay, Conflict.REFUSED)
    assert alert.data["request_id"] == "lost-reply"
    again = send(circulation, CHECKOUT, clock.now, request_id="lost-reply", patron=AN, item=TN[0])
    assert again.repeated and again.alerts == []  # once
    assert [a.data["request_id"] for a in alerts(library)] == ["lost-reply"]
