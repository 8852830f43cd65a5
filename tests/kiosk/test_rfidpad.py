"""The kiosk's RFID pad: stacks of books, sets, patron cards and the AFI, against the real rules.

The pad's reader is the simulated one (`SimulatedRfidReader` over a `SimulatedPad`, with
its faults); everything above it is real: tag data codecs, the pad, the session and the
library's circulation rules on SQLite. Rounds are driven by `step()` on a fake monotonic
clock, so timing (settle time, absence, put-back time) is exact; one test runs the pad's
own thread inside the headless station.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from drivers.base import SimulatedScanner
from drivers.rfid.simulated import SimulatedPad, SimulatedRfidReader, SimulatedTag
from drivers.rfid.tagdata import TagData, Usage, encode_tag
from kiosk.config import RfidConfig, SessionConfig, StationConfig
from kiosk.devices import DeviceWatch
from kiosk.headless import render, run_headless
from kiosk.messages import text
from kiosk.rfidpad import PadNotice, PadRead, RfidPad, notice_text
from kiosk.session import (
    INCOMPLETE_SET,
    ItemBorrowed,
    ItemRefused,
    ItemReturned,
    NeedCard,
    Outcome,
    ReturnRefused,
    Session,
    StocktakeStarted,
)
from protocol import CheckoutArgs, Op

ON_LOAN, IN_STOCK = 0xC2, 0x07
TEACHER = "GV-0001"    # may borrow 5 TN books
STUDENT = "HS-2024-0001"
STEP = 0.2             # seconds between two rounds, as poll_interval_s says

_uids = iter(range(1, 10_000))


def tag(item: str, usage: Usage = Usage.LOANABLE, *, parts: int = 1, part: int = 1,
        model: str = "28560-3", afi: int = IN_STOCK) -> SimulatedTag:
    data = encode_tag(TagData(model, usage, item, parts, part, "VN", "VN-THCS01"))  # type: ignore[arg-type]
    memory = bytearray(28 * 4)
    memory[:len(data)] = data
    return SimulatedTag(uid=f"E0040150{next(_uids):08X}", afi=afi, memory=memory)


def card(code: str) -> SimulatedTag:
    return tag(code, Usage.PATRON_CARD)


class PadStation:
    """A kiosk whose only input is the pad: the runner's loop, one round at a time."""

    def __init__(self, backend: Any, mono: Any, *, config: RfidConfig | None = None,
                 **pad: Any) -> None:
        self.mono = mono
        self.backend = backend
        self.sim = SimulatedPad()
        self.reader = SimulatedRfidReader(self.sim, clock=mono)
        self.pad = RfidPad(self.reader, config or RfidConfig(), clock=mono, **pad)
        self.session = Session(backend, SessionConfig(), self, mono)
        self.outcomes: list[Outcome] = []
        self.notices: list[PadNotice] = []
        self.reads: list[PadRead] = []
        self.pad.attach(self.reads.append, self.notices.append)

    def on_outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.pad.on_outcome(outcome)

    def run(self, seconds: float = STEP) -> list[Outcome]:
        """Rounds for `seconds`; each read goes to the session as a runner hands it over."""
        start = len(self.outcomes)
        for _ in range(max(1, round(seconds / STEP))):
            self.pad.step()
            while self.reads:
                read = self.reads.pop(0)
                if read.refusal is not None:
                    self.session.refuse_item(read.code, read.refusal, parts=read.parts)
                else:
                    self.session.scan(read.code)
            self.mono.advance(STEP)
        self.pad.step()  # the last outcomes' AFI writes
        return self.outcomes[start:]

    def afi(self, *tags: SimulatedTag) -> list[int]:
        return [self.sim.tag(t.uid).afi if t.uid in self.sim.uids else t.afi for t in tags]

    def checkouts(self) -> list[str]:
        return [r.id for r in self.backend.sent if r.op is Op.LOAN_CHECKOUT]


@pytest.fixture
def station(backend, mono) -> PadStation:  # type: ignore[no-untyped-def]
    return PadStation(backend, mono)


def kinds(outcomes: list[Outcome]) -> list[str]:
    return [type(o).__name__ for o in outcomes]


# --- a stack of books -----------------------------------------------------------------

def test_a_card_and_three_books_laid_down_together_lend_three_and_lock_three(
        station: PadStation, library) -> None:  # type: ignore[no-untyped-def]
    books = [tag("TN00001"), tag("TN00002"), tag("TN00003")]
    teacher = card(TEACHER)
    station.sim.place(*books, teacher)  # the card last: the pad still reads it first

    outcomes = station.run(1.0)

    assert kinds(outcomes) == ["PatronIdentified", "ItemBorrowed", "ItemBorrowed", "ItemBorrowed"]
    assert sorted(o.item for o in outcomes if isinstance(o, ItemBorrowed)) == [
        "TN.00001", "TN.00002", "TN.00003"]
    assert library.loans_of(TEACHER) == ["TN.00001", "TN.00002", "TN.00003"]
    assert station.afi(*books) == [ON_LOAN] * 3
    assert station.afi(teacher) == [IN_STOCK]  # a card is never "lent"
    ids = station.checkouts()
    assert len(ids) == 3 and len(set(ids)) == 3  # each checkout its own request id
    assert station.notices == []
    # Left on the pad, nothing is read again.
    assert station.run(3.0) == [] and len(station.checkouts()) == 3


def test_books_laid_down_before_the_card_are_lent_when_the_card_comes(
        station: PadStation, library) -> None:  # type: ignore[no-untyped-def]
    books = [tag("TN00001"), tag("TN00002")]
    station.sim.place(*books)
    assert kinds(station.run(0.4)) == ["NeedCard", "NeedCard"]
    assert station.afi(*books) == [IN_STOCK] * 2

    station.sim.place(card(TEACHER))
    assert kinds(station.run(0.6)) == ["PatronIdentified", "ItemBorrowed", "ItemBorrowed"]
    assert library.loans_of(TEACHER) == ["TN.00001", "TN.00002"]
    assert station.afi(*books) == [ON_LOAN] * 2


def test_books_already_on_the_pad_are_read_again_when_a_stocktake_starts(
        station: PadStation) -> None:
    books = [tag("TN00001"), tag("TN00002")]
    station.sim.place(*books)
    assert kinds(station.run(0.4)) == ["NeedCard", "NeedCard"]
    station.pad.step()
    assert station.reads == []  # left lying there, they are not read again...

    station.pad.on_outcome(StocktakeStarted(fixed=False, recent=()))
    station.pad.step()
    # ...until the librarian starts counting: then each counts, once.
    assert sorted(read.code for read in station.reads) == ["TN00001", "TN00002"]
    station.reads.clear()
    station.pad.step()
    assert station.reads == []


def test_a_refused_book_keeps_its_in_stock_afi(station: PadStation, library) -> None:  # type: ignore[no-untyped-def]
    reference, novel = tag("TK00003"), tag("TN00001")
    station.sim.place(card(STUDENT))
    station.run()
    station.sim.place(reference, novel)
    outcomes = station.run(0.6)
    refused = [o for o in outcomes if isinstance(o, ItemRefused)]
    assert [r.item for r in refused] == ["TK00003"] and refused[0].code == "item_not_loanable"
    assert station.afi(reference, novel) == [IN_STOCK, ON_LOAN]
    assert library.loans_of(STUDENT) == ["TN.00001"]


def test_return_mode_writes_the_in_stock_afi(station: PadStation, library, backend) -> None:  # type: ignore[no-untyped-def]
    for item in ("TN00001", "TN00002"):
        assert backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=STUDENT, item=item)).ok
    books = [tag("TN00001", afi=ON_LOAN), tag("TN00002", afi=ON_LOAN), tag("TN00003")]
    station.session.start_return()
    station.sim.place(*books)
    outcomes = station.run(0.6)
    assert kinds(outcomes) == ["ItemReturned", "ItemReturned", "ReturnRefused"]
    assert library.loans_of(STUDENT) == []
    # TN00003 was not on loan: refused, and its tag is left as it was.
    assert station.afi(*books) == [IN_STOCK, IN_STOCK, IN_STOCK]
    assert {o.code for o in outcomes if isinstance(o, ItemReturned)} == {"TN00001", "TN00002"}


# --- sets -----------------------------------------------------------------------------

def test_a_set_with_a_part_missing_is_refused_here_and_never_sent(
        station: PadStation, library) -> None:  # type: ignore[no-untyped-def]
    part1, part2 = tag("GK00001", parts=2, part=1), tag("GK00001", parts=2, part=2)
    station.sim.place(card(STUDENT))
    station.run()
    station.sim.place(part1)
    assert station.run(0.4) == []  # the other part may still be coming: settle first
    outcomes = station.run(1.0)
    assert outcomes == [ItemRefused("GK00001", INCOMPLETE_SET, None, parts=2)]
    assert station.checkouts() == []
    assert station.afi(part1) == [IN_STOCK]
    line = render(outcomes[0], "en")
    assert text("rfid.incomplete_set", "en", n=2) in line and "2 parts" in line
    # Refused once, however long it lies there.
    assert station.run(2.0) == []

    # The missing part comes after all: now the whole set is lent, both parts locked.
    station.sim.place(part2)
    outcomes = station.run(0.4)
    assert kinds(outcomes) == ["ItemBorrowed"] and library.loans_of(STUDENT) == ["GK.00001"]
    assert station.afi(part1, part2) == [ON_LOAN, ON_LOAN]


def test_a_whole_set_laid_down_is_one_loan(station: PadStation, library) -> None:  # type: ignore[no-untyped-def]
    parts = [tag("GK00001", parts=3, part=n) for n in (1, 2, 3)]
    station.sim.place(card(STUDENT), *parts)
    outcomes = station.run(0.6)
    assert kinds(outcomes) == ["PatronIdentified", "ItemBorrowed"]
    assert len(station.checkouts()) == 1
    assert station.afi(*parts) == [ON_LOAN] * 3


def test_an_incomplete_set_in_return_mode_goes_to_the_desk(station: PadStation, library, backend) -> None:  # type: ignore[no-untyped-def]
    assert backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=STUDENT, item="GK00001")).ok
    part2 = tag("GK00001", parts=2, part=2, afi=ON_LOAN)
    station.session.start_return()
    station.sim.place(part2)
    outcomes = station.run(2.0)
    assert outcomes == [ReturnRefused("GK00001", INCOMPLETE_SET, None, parts=2)]
    assert library.loans_of(STUDENT) == ["GK.00001"] and station.afi(part2) == [ON_LOAN]


def test_an_incomplete_set_before_any_card_asks_for_the_card(station: PadStation) -> None:
    station.sim.place(tag("GK00001", parts=2, part=1))
    assert station.run(2.0) == [NeedCard("GK00001")]
    station.sim.place(card(STUDENT))
    outcomes = station.run(0.4)
    assert kinds(outcomes) == ["PatronIdentified", "ItemRefused"]
    assert outcomes[1] == ItemRefused("GK00001", INCOMPLETE_SET, None, parts=2)


# --- tags that come and go ------------------------------------------------------------

def test_a_tag_lifted_mid_read_is_lent_once_when_it_comes_back(station: PadStation, library) -> None:  # type: ignore[no-untyped-def]
    station.sim.place(card(TEACHER))
    station.run()
    book = tag("TN00001")
    station.sim.place(book)
    station.sim.leave_after(book.uid, 0)  # lifted as its blocks are read
    assert station.run(0.4) == []
    assert book.uid not in station.sim.uids
    station.sim.place(book)
    assert kinds(station.run(0.4)) == ["ItemBorrowed"]
    # Lifted and laid down again later in the session: not sent again, not refused.
    station.sim.remove(book.uid)
    station.run(2.0)
    station.sim.place(book)
    assert station.run(1.0) == []
    assert len(station.checkouts()) == 1 and library.loans_of(TEACHER) == ["TN.00001"]
    assert station.afi(book) == [ON_LOAN] and station.notices == []


def test_a_book_lifted_before_its_afi_is_written_is_asked_back(station: PadStation, library) -> None:  # type: ignore[no-untyped-def]
    station.sim.place(card(TEACHER))
    station.run()
    book = tag("TN00001")
    station.sim.place(book)
    station.pad.step()
    station.session.scan(station.reads.pop().code)  # the server confirms...
    lifted = station.sim.remove(book.uid)           # ...as the child picks the book up
    assert lifted is not None and lifted.afi == IN_STOCK
    station.run(0.4)
    assert station.notices == [PadNotice("put_back", "TN.00001", "Dế Mèn phiêu lưu ký")]
    assert "Dế Mèn phiêu lưu ký" in notice_text(station.notices[0], "en")
    # Back on the pad a few seconds later: its AFI is written and it is not lent again.
    station.run(3.0)
    station.sim.place(lifted)
    assert station.run(0.4) == []
    assert station.afi(lifted) == [ON_LOAN]
    assert [n.kind for n in station.notices] == ["put_back", "secured"]
    assert len(station.checkouts()) == 1


def test_a_book_never_put_back_sends_the_reader_to_the_librarian(
        backend, mono, library, caplog) -> None:  # type: ignore[no-untyped-def]
    station = PadStation(backend, mono, put_back_s=10.0)
    station.sim.place(card(TEACHER))
    station.run()
    book = tag("TN00001")
    station.sim.place(book)
    station.pad.step()
    station.session.scan(station.reads.pop().code)
    station.sim.remove(book.uid)
    with caplog.at_level(logging.ERROR, logger="thuvien.kiosk.rfidpad"):
        station.run(12.0)
    assert [n.kind for n in station.notices] == ["put_back", "ask_librarian"]
    assert library.loans_of(TEACHER) == ["TN.00001"]  # the loan stands
    assert any("TN.00001" in r.message and book.uid in r.message for r in caplog.records)
    # Laid down much later, it is just a book on the pad again (the server decides).
    station.session.done()
    station.sim.place(book)
    assert kinds(station.run(0.4)) == ["NeedCard"]


def test_an_afi_that_never_sticks_sends_the_reader_to_the_librarian(
        station: PadStation, library, caplog) -> None:  # type: ignore[no-untyped-def]
    book = tag("TN00001")
    book.afi_sticks = False
    station.sim.place(card(TEACHER), book)
    with caplog.at_level(logging.ERROR, logger="thuvien.kiosk.rfidpad"):
        outcomes = station.run(0.6)
    assert kinds(outcomes) == ["PatronIdentified", "ItemBorrowed"]
    assert station.notices == [PadNotice("ask_librarian", "TN.00001", "Dế Mèn phiêu lưu ký")]
    assert station.afi(book) == [IN_STOCK]
    assert any("did not stick" in r.message for r in caplog.records)
    assert station.run(2.0) == [] and len(station.notices) == 1  # said once


# --- bad tags and a bad reader --------------------------------------------------------

def test_an_unreadable_tag_is_retried_then_reported_once(station: PadStation) -> None:
    blank = SimulatedTag(uid="E004015000ABCDEF")  # all zeros: no library data
    corrupt = tag("TN00002")
    corrupt.memory[5] ^= 0xFF  # the CRC no longer matches
    station.sim.place(card(TEACHER), blank, corrupt, tag("TN00001"))
    outcomes = station.run(2.0)
    assert kinds(outcomes) == ["PatronIdentified", "ItemBorrowed"]
    assert station.notices == [PadNotice("unreadable"), PadNotice("unreadable")]
    assert len(station.checkouts()) == 1


def test_rf_errors_and_junk_are_retried_by_the_reader(station: PadStation, library) -> None:  # type: ignore[no-untyped-def]
    station.sim.place(card(TEACHER), tag("TN00001"))
    station.sim.inject("rf", 2)
    station.sim.inject("junk", 1)
    assert kinds(station.run(0.6)) == ["PatronIdentified", "ItemBorrowed"]
    assert station.notices == []


def test_the_data_model_of_the_config_is_the_one_read(backend, mono) -> None:  # type: ignore[no-untyped-def]
    station = PadStation(backend, mono, config=RfidConfig(data_model="28560-2"))
    station.sim.place(card(TEACHER), tag("TN00001", model="28560-2"))
    outcomes = station.run(1.0)
    # The card is a 28560-3 tag: not this library's model, so it cannot be read.
    assert kinds(outcomes) == ["NeedCard"]
    assert station.notices == [PadNotice("unreadable")]


def test_an_unplugged_reader_faults_recovers_and_does_not_reread_the_stack(
        station: PadStation, library) -> None:  # type: ignore[no-untyped-def]
    events: list[tuple[str, str]] = []

    class Sink:
        def set_device(self, name: str, state: str) -> None:
            pass

        def publish_event(self, type_: str, data: Any) -> bool:
            events.append((type_, data.detail if type_ == "device.fault" else data.state))
            return True

    watch = DeviceWatch([station.pad], Sink())
    books = [tag("TN00001"), tag("TN00002")]
    station.sim.place(card(TEACHER), *books)
    station.run(0.4)
    assert watch.poll() == {"rfid": "ok"}

    station.sim.unplug()
    station.run(3.0)
    assert station.pad.state == "fault" and "unplugged" in station.pad.last_error
    assert watch.poll() == {"rfid": "fault"}
    station.sim.replug()
    assert station.run(1.0) == []  # the same stack is not a new stack
    assert watch.poll() == {"rfid": "ok"} and station.pad.last_error == ""
    assert events == [("device.fault", events[0][1]), ("device.ok", "ok")]
    assert "unplugged" in events[0][1]
    assert len(station.checkouts()) == 2


def test_the_pad_is_absent_until_started_and_after_it_stops(backend, mono) -> None:  # type: ignore[no-untyped-def]
    reader = SimulatedRfidReader(SimulatedPad())
    pad = RfidPad(reader)
    assert pad.name == "rfid" and pad.state == "absent" and pad.check() == "absent"
    pad.start(lambda read: None)
    assert pad.state == "ok" and reader.state == "ok"
    with pytest.raises(RuntimeError):
        pad.start(lambda read: None)
    pad.stop()
    pad.stop()
    assert pad.state == "absent" and reader.state == "absent"


def test_from_config_builds_the_configured_reader() -> None:
    config = StationConfig(site="thcs-thu-nghiem", station="kiosk-1",
                           rfid=RfidConfig(afi_on_loan=0xDA, afi_in_stock=0xD7),
                           devices={"rfid": {"type": "simulated", "name": "pad"}})
    pad = RfidPad.from_config(config)
    assert isinstance(pad.reader, SimulatedRfidReader) and pad.name == "pad"
    assert pad.config.afi_on_loan == 0xDA
    with pytest.raises(ValueError, match="no \\[devices.rfid\\]"):
        RfidPad.from_config(StationConfig(site="thcs-thu-nghiem", station="kiosk-1"))


def test_a_failing_listener_does_not_stop_the_pad(backend, mono) -> None:  # type: ignore[no-untyped-def]
    sim = SimulatedPad([card(TEACHER), tag("TN00001")])
    pad = RfidPad(SimulatedRfidReader(sim), clock=mono)
    got: list[str] = []

    def flaky(read: Any) -> None:
        got.append(read.code)
        raise RuntimeError("the station's bug")

    pad.attach(flaky)
    pad.step()
    assert got == [TEACHER, "TN00001"]


# --- the pad's own thread in the terminal station -------------------------------------

def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_the_headless_station_lends_a_stack_from_the_pad(backend, library) -> None:  # type: ignore[no-untyped-def]
    config = StationConfig(site="thcs-thu-nghiem", station="kiosk-1", language="en",
                           rfid=RfidConfig(poll_interval_s=0.05, absent_after_s=0.3))
    sim = SimulatedPad()
    pad = RfidPad(SimulatedRfidReader(sim), config.rfid)
    out, stop = io.StringIO(), threading.Event()
    runner = threading.Thread(target=run_headless, args=(config, backend, SimulatedScanner(), out),
                              kwargs={"stop": stop, "tick_interval": 0.05, "rfid_pad": pad})
    runner.start()
    try:
        books = [tag("TN00001"), tag("TN00002")]
        sim.place(card(TEACHER), *books, tag("GK00001", parts=2, part=1))
        wait_for(lambda: [sim.tag(b.uid).afi for b in books] == [ON_LOAN, ON_LOAN])
        wait_for(lambda: "2 parts" in out.getvalue())
        assert library.loans_of(TEACHER) == ["TN.00001", "TN.00002"]
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive() and pad.state == "absent"
    printed = out.getvalue()
    assert printed.count("✔") == 2 and text("rfid.incomplete_set", "en", n=2) in printed
