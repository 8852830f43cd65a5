"""The session state machine, driven through every transition against the real rules."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel

from kiosk.config import SessionConfig
from kiosk.session import (
    Ignored,
    InactivityWarning,
    ItemBorrowed,
    ItemRefused,
    ItemReturned,
    NeedCard,
    Outcome,
    PatronIdentified,
    PatronRefused,
    ReturnModeStarted,
    ReturnRefused,
    ServerUnreachable,
    Session,
    SessionEnded,
    State,
    Unreadable,
)
from protocol import CheckoutArgs, CheckoutResult, LoanLine, Op, Reply, ReturnResult

AN = "HS-2024-0001"  # Nguyễn Văn An, student
BLOCKED = "HS-2024-0003"  # Lê Minh Châu, blocked by the librarian
TEACHER = "GV-0001"  # Phạm Thu Hà
DE_MEN = "Dế Mèn phiêu lưu ký"


@dataclass
class Recorder:
    """The listener: every outcome, and the session's state when it was delivered."""

    session: Session | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    states: list[State] = field(default_factory=list)

    def on_outcome(self, outcome: Outcome) -> None:
        assert self.session is not None
        self.outcomes.append(outcome)
        self.states.append(self.session.state)

    def take(self) -> list[Outcome]:
        taken, self.outcomes = self.outcomes, []
        return taken


@dataclass
class Kiosk:
    session: Session
    recorder: Recorder
    mono: Any

    def scan(self, code: str) -> list[Outcome]:
        self.session.scan(code)
        return self.recorder.take()

    def start_return(self) -> list[Outcome]:
        self.session.start_return()
        return self.recorder.take()

    def done(self) -> list[Outcome]:
        self.session.done()
        return self.recorder.take()

    def logout(self) -> list[Outcome]:
        self.session.logout()
        return self.recorder.take()

    def tick(self) -> list[Outcome]:
        self.session.tick()
        return self.recorder.take()


def make_kiosk(backend: Any, mono: Any, config: SessionConfig | None = None) -> Kiosk:
    recorder = Recorder()
    session = Session(backend, config or SessionConfig(), recorder, clock=mono)
    recorder.session = session
    return Kiosk(session, recorder, mono)


@pytest.fixture
def kiosk(network, mono) -> Kiosk:  # type: ignore[no-untyped-def]
    return make_kiosk(network, mono)


def identified(kiosk: Kiosk, card: str) -> PatronIdentified:
    [who] = kiosk.scan(card)
    assert isinstance(who, PatronIdentified), who
    return who


# --- borrowing -------------------------------------------------------------------------

def test_an_item_before_any_card_asks_for_the_card(kiosk, backend) -> None:
    assert kiosk.scan("TN00001") == [NeedCard("TN00001")]
    assert kiosk.session.state is State.IDLE
    assert backend.sent == []


def test_student_borrows_and_finishes_with_a_summary(kiosk, library) -> None:
    who = identified(kiosk, AN)
    assert (who.name, who.kind, who.class_name) == ("Nguyễn Văn An", "student", "5A")
    assert (who.loans, who.can_borrow, who.blocks) == ((), 3, ())
    assert kiosk.session.state is State.PATRON

    # Saturday 12/09 + 7 days: Saturday 19/09/2026, an open day.
    assert kiosk.scan("TN00001") == [ItemBorrowed("TN.00001", DE_MEN, dt.date(2026, 9, 19), 1)]
    assert kiosk.session.state is State.SCANNING
    # A textbook is lent for the school year.
    assert kiosk.scan("GK00001") == [ItemBorrowed("GK.00001", "Tiếng Việt 5 – Tập một",
                                                  dt.date(2027, 5, 31), 2)]

    [reference] = kiosk.scan("TK00003")
    assert isinstance(reference, ItemRefused)
    assert (reference.item, reference.code) == ("TK00003", "item_not_loanable")
    # The server's sentence, passed on as given.
    assert reference.message == library.refusal(Op.LOAN_CHECKOUT, CheckoutArgs(patron=AN, item="TK00003"))
    [unknown] = kiosk.scan("XX12345")
    assert isinstance(unknown, ItemRefused) and unknown.code == "unknown_item"
    assert kiosk.session.state is State.SCANNING
    assert library.loans_of(AN) == ["GK.00001", "TN.00001"]

    [ended] = kiosk.done()
    assert ended == SessionEnded("done", "borrow", borrowed=(
        CheckoutResult(item="TN.00001", title=DE_MEN, due=dt.date(2026, 9, 19)),
        CheckoutResult(item="GK.00001", title="Tiếng Việt 5 – Tập một", due=dt.date(2027, 5, 31)),
    ))
    assert kiosk.recorder.states[-1] is State.SUMMARY
    assert kiosk.session.state is State.IDLE
    assert (kiosk.session.patron, kiosk.session.borrowed) == (None, ())


def test_the_servers_limits_are_the_servers_refusals(kiosk) -> None:
    identified(kiosk, AN)
    assert isinstance(kiosk.scan("TN00001")[0], ItemBorrowed)
    assert isinstance(kiosk.scan("TN00002")[0], ItemBorrowed)
    [third] = kiosk.scan("TN00003")  # students take at most 2 TN books
    assert isinstance(third, ItemRefused) and third.code == "limit_reached" and third.message
    [ended] = kiosk.done()
    assert [b.item for b in ended.borrowed] == ["TN.00001", "TN.00002"]


def test_unknown_card_is_refused_with_the_servers_message(kiosk) -> None:
    [refused] = kiosk.scan("HS-9999-9999")
    assert isinstance(refused, PatronRefused) and refused.code == "unknown_patron"
    assert refused.message and "HS-9999-9999" in refused.message
    assert kiosk.session.state is State.IDLE


def test_moet_id_and_lower_case_card_numbers_are_cards(kiosk) -> None:
    assert identified(kiosk, "7901234561").name == "Nguyễn Văn An"
    assert kiosk.logout() == [SessionEnded("logout", "borrow")]
    assert identified(kiosk, "hs-2024-0002").name == "Trần Thị Bình"


def test_blocked_reader_is_refused_here_and_may_still_return(kiosk, backend) -> None:
    identified(kiosk, AN)
    kiosk.scan("TN00001")
    kiosk.done()
    kiosk.mono.advance(60)  # another reader, later

    who = identified(kiosk, BLOCKED)
    assert (who.blocks, who.can_borrow) == (("blocked",), 0)
    sent = len(backend.sent)
    assert kiosk.scan("TN00002") == [ItemRefused("TN00002", "patron_blocked", None, ("blocked",))]
    assert len(backend.sent) == sent  # refused by the station; nothing was asked
    assert kiosk.session.state is State.PATRON

    assert kiosk.start_return() == [SessionEnded("done", "borrow"), ReturnModeStarted()]
    assert kiosk.session.state is State.RETURNING and kiosk.session.patron is None
    [back] = kiosk.scan("TN00001")
    assert back == ItemReturned("TN.00001", DE_MEN, False, 0, 1)
    assert kiosk.done() == [SessionEnded("done", "return", returned=(
        ReturnResult(item="TN.00001", title=DE_MEN, was_overdue=False, days_late=0),))]
    assert kiosk.session.state is State.IDLE


def test_overdue_loan_blocks_and_its_return_reports_lateness(kiosk, library) -> None:
    identified(kiosk, AN)
    kiosk.scan("TN00001")
    kiosk.done()
    library.clock.advance(10)  # Tuesday 22/09: three days after 19/09
    kiosk.mono.advance(60)

    who = identified(kiosk, AN)
    assert who.blocks == ("overdue",)
    assert who.loans == (LoanLine(item="TN.00001", title=DE_MEN, due=dt.date(2026, 9, 19), overdue=True),)
    [refused] = kiosk.scan("TN00002")
    assert isinstance(refused, ItemRefused) and refused.code == "patron_blocked"

    kiosk.start_return()
    assert kiosk.scan("TN00001") == [ItemReturned("TN.00001", DE_MEN, True, 3, 1)]
    [not_lent] = kiosk.scan("TN00003")
    assert isinstance(not_lent, ReturnRefused) and not_lent.code == "item_not_on_loan" and not_lent.message

    # The same reader, back at the card reader: the return session ends, a new one starts.
    kiosk.mono.advance(5)
    ended, who = kiosk.scan(AN)
    assert ended == SessionEnded("new_card", "return", returned=(
        ReturnResult(item="TN.00001", title=DE_MEN, was_overdue=True, days_late=3),))
    assert isinstance(who, PatronIdentified) and who.blocks == () and who.can_borrow == 3
    assert kiosk.session.state is State.PATRON


# --- cards mid-session -----------------------------------------------------------------

def test_another_card_ends_the_session_and_the_same_card_does_not(kiosk) -> None:
    identified(kiosk, AN)
    kiosk.scan("TN00001")
    kiosk.mono.advance(5)
    assert kiosk.scan(AN) == [Ignored(AN, "same_card")]
    assert kiosk.session.state is State.SCANNING

    ended, who = kiosk.scan(TEACHER)
    assert ended == SessionEnded("new_card", "borrow", borrowed=(
        CheckoutResult(item="TN.00001", title=DE_MEN, due=dt.date(2026, 9, 19)),))
    assert isinstance(who, PatronIdentified) and (who.name, who.kind) == ("Phạm Thu Hà", "teacher")
    # The teacher's loans are the teacher's: 14 days.
    assert kiosk.scan("TN00002") == [ItemBorrowed("TN.00002", DE_MEN, dt.date(2026, 9, 26), 1)]


def test_a_refused_new_card_leaves_the_station_idle(kiosk) -> None:
    identified(kiosk, AN)
    ended, refused = kiosk.scan("HS-9999-9999")
    assert ended == SessionEnded("new_card", "borrow")
    assert isinstance(refused, PatronRefused)
    assert (kiosk.session.state, kiosk.session.patron) == (State.IDLE, None)


# --- a scanner's repeats ---------------------------------------------------------------

def test_repeats_within_the_window_are_one_read(kiosk, backend, library) -> None:
    identified(kiosk, AN)
    assert isinstance(kiosk.scan("TN00001")[0], ItemBorrowed)
    sent = len(backend.sent)
    kiosk.mono.advance(1)
    assert kiosk.scan("TN00001") == [Ignored("TN00001", "duplicate")]
    kiosk.mono.advance(2.5)  # 3.5 s after the first read, but 2.5 s after the last
    assert kiosk.scan("TN00001") == [Ignored("TN00001", "duplicate")]
    assert len(backend.sent) == sent

    kiosk.mono.advance(3)
    [again] = kiosk.scan("TN00001")  # now a deliberate second scan, and the server says so
    assert isinstance(again, ItemRefused) and again.code == "item_on_loan"
    assert library.loans_of(AN) == ["TN.00001"]


def test_repeats_are_dropped_in_every_state(kiosk) -> None:
    assert kiosk.scan("TN00001") == [NeedCard("TN00001")]
    assert kiosk.scan("TN00001") == [Ignored("TN00001", "duplicate")]
    identified(kiosk, AN)
    assert kiosk.scan(AN) == [Ignored(AN, "duplicate")]  # a card held on the reader
    kiosk.start_return()
    [refused] = kiosk.scan("TN00002")
    assert isinstance(refused, ReturnRefused)
    assert kiosk.scan("TN00002") == [Ignored("TN00002", "duplicate")]
    kiosk.done()
    # Still on the reader after the session: it must not start another one.
    assert kiosk.scan(AN) == [Ignored(AN, "duplicate")]


def test_a_book_read_again_after_a_change_of_mode_is_a_new_request(kiosk) -> None:
    assert kiosk.scan("TN00001") == [NeedCard("TN00001")]
    identified(kiosk, AN)  # "scan your card first": card, then the same book at once
    assert kiosk.scan("TN00001") == [ItemBorrowed("TN.00001", DE_MEN, dt.date(2026, 9, 19), 1)]
    kiosk.start_return()  # it was meant to go back after all
    assert kiosk.scan("TN00001") == [ItemReturned("TN.00001", DE_MEN, False, 0, 1)]


def test_window_zero_keeps_every_read(network, mono) -> None:
    kiosk = make_kiosk(network, mono, SessionConfig(duplicate_window_s=0))
    assert kiosk.scan("TN00001") == [NeedCard("TN00001")]
    assert kiosk.scan("TN00001") == [NeedCard("TN00001")]


# --- inactivity ------------------------------------------------------------------------

def test_inactivity_warns_then_ends_the_session(kiosk) -> None:
    identified(kiosk, AN)
    kiosk.scan("TN00001")
    kiosk.mono.advance(119.9)
    assert kiosk.tick() == []
    kiosk.mono.advance(0.1)
    assert kiosk.tick() == [InactivityWarning(seconds_left=20)]
    assert kiosk.tick() == []  # one warning; the screen counts down
    kiosk.mono.advance(19.9)
    assert kiosk.tick() == []
    kiosk.mono.advance(0.1)
    [ended] = kiosk.tick()
    assert ended.reason == "timeout" and [b.item for b in ended.borrowed] == ["TN.00001"]
    assert (kiosk.session.state, kiosk.session.patron) == (State.IDLE, None)
    kiosk.mono.advance(1000)
    assert kiosk.tick() == []


def test_any_input_cancels_the_warning(kiosk) -> None:
    identified(kiosk, AN)
    kiosk.mono.advance(120)
    assert kiosk.tick() == [InactivityWarning(seconds_left=20)]
    kiosk.mono.advance(10)
    [refused] = kiosk.scan("XX12345")  # even an input that achieved nothing
    assert isinstance(refused, ItemRefused) and refused.code == "unknown_item"
    kiosk.mono.advance(15)  # past the old deadline
    assert kiosk.tick() == []
    kiosk.mono.advance(105)  # 120 s after the scan: a fresh warning, not an end
    assert kiosk.tick() == [InactivityWarning(seconds_left=20)]
    kiosk.mono.advance(5)
    assert kiosk.start_return() == [SessionEnded("done", "borrow"), ReturnModeStarted()]
    kiosk.mono.advance(119)
    assert kiosk.tick() == []


def test_a_scanners_repeats_do_not_keep_a_session_open(kiosk) -> None:
    identified(kiosk, AN)
    kiosk.scan("TN00001")
    seen: list[Outcome] = []
    for _ in range(60):  # the book lies on the scanner for two minutes
        kiosk.mono.advance(2)
        seen += kiosk.scan("TN00001") + kiosk.tick()
    assert seen.count(InactivityWarning(seconds_left=20)) == 1
    assert all(isinstance(o, (Ignored, InactivityWarning)) for o in seen)


def test_return_mode_times_out_and_idle_never_does(kiosk) -> None:
    kiosk.mono.advance(10_000)
    assert kiosk.tick() == []
    assert kiosk.start_return() == [ReturnModeStarted()]
    kiosk.mono.advance(120)
    assert kiosk.tick() == [InactivityWarning(seconds_left=20)]
    kiosk.mono.advance(20)
    assert kiosk.tick() == [SessionEnded("timeout", "return")]


# --- the network edge ------------------------------------------------------------------

def test_an_unreachable_server_leaves_the_session_where_it_was(kiosk, network, library) -> None:
    network.down = True
    assert kiosk.scan(AN) == [ServerUnreachable(Op.PATRON_IDENTIFY)]
    assert kiosk.session.state is State.IDLE

    network.down = False
    kiosk.mono.advance(5)
    identified(kiosk, AN)
    network.down = True
    assert kiosk.scan("TN00001") == [ServerUnreachable(Op.LOAN_CHECKOUT)]
    assert kiosk.session.state is State.PATRON
    network.down = False
    kiosk.mono.advance(5)
    assert isinstance(kiosk.scan("TN00001")[0], ItemBorrowed)

    kiosk.start_return()
    network.down = True
    kiosk.mono.advance(5)
    assert kiosk.scan("TN00001") == [ServerUnreachable(Op.LOAN_RETURN)]
    assert kiosk.session.state is State.RETURNING
    assert library.loans_of(AN) == ["TN.00001"]


class WrongVersionServer:
    """A peer whose checkout results lack `due`: what a mismatched server would send."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        reply = self._backend.request(op, args, timeout=timeout)
        if op is Op.LOAN_CHECKOUT and reply.ok:
            result = {k: v for k, v in (reply.result or {}).items() if k != "due"}
            return Reply(id=reply.id, ok=True, result=result)
        return reply


def test_a_reply_that_breaks_the_contract_is_a_refusal(backend, mono) -> None:
    kiosk = make_kiosk(WrongVersionServer(backend), mono)
    identified(kiosk, AN)
    assert kiosk.scan("TN00001") == [ItemRefused("TN00001", "internal", None)]
    assert kiosk.session.borrowed == ()


# --- the other inputs ------------------------------------------------------------------

def test_done_and_logout_when_idle_do_nothing(kiosk) -> None:
    assert kiosk.done() == []
    assert kiosk.logout() == []
    assert kiosk.session.state is State.IDLE


def test_logout_ends_a_borrowing_session(kiosk) -> None:
    identified(kiosk, AN)
    kiosk.scan("TN00001")
    [ended] = kiosk.logout()
    assert (ended.reason, ended.mode, len(ended.borrowed)) == ("logout", "borrow", 1)
    assert kiosk.recorder.states[-1] is State.SUMMARY
    assert kiosk.session.state is State.IDLE


def test_return_mode_again_and_done_with_nothing_returned(kiosk) -> None:
    assert kiosk.start_return() == [ReturnModeStarted()]
    assert kiosk.start_return() == [ReturnModeStarted()]
    assert kiosk.done() == [SessionEnded("done", "return")]


def test_a_misread_is_not_sent(kiosk, backend) -> None:
    [misread] = kiosk.scan("7" * 200)
    assert isinstance(misread, Unreadable)
    assert kiosk.scan("   ") == []
    assert backend.sent == []


def test_nothing_about_the_reader_outlives_the_session(kiosk) -> None:
    identified(kiosk, AN)
    kiosk.scan("TN00001")
    kiosk.done()
    kiosk.mono.advance(3)  # past the repeat window, which remembers the card's number
    kiosk.tick()
    own_state = {k: v for k, v in vars(kiosk.session).items() if k not in ("_backend", "_listener")}
    memory = repr(own_state)
    for trace in (AN, "Nguyễn Văn An", "TN00001", "TN.00001", DE_MEN):
        assert trace not in memory
