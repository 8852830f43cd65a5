"""The kiosk's RFID pad end to end: a terminal station with a simulated pad, its MQTT link
to the real server on a real Mosquitto, and the loans as the server's ledger records them.

Only the tags and the reader are simulated (`SimulatedPad`, `SimulatedRfidReader`); the
pad runs on its own thread as at a kiosk, the station's loop is `run_headless`.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from drivers.base import SimulatedScanner
from drivers.rfid.simulated import SimulatedPad, SimulatedRfidReader, SimulatedTag
from drivers.rfid.tagdata import TagData, Usage, encode_tag
from kiosk.config import RfidConfig, StationConfig
from kiosk.headless import run_headless
from kiosk.messages import text
from kiosk.rfidpad import RfidPad
from server import db
from server.models import Copy, LedgerEntry

ON_LOAN, IN_STOCK = 0xC2, 0x07
TEACHER = "GV-0001"  # may borrow 5 TN books in this library
DE_MEN = "Dế Mèn phiêu lưu ký"

_serial = iter(range(1, 10_000))


def tag(item: str, usage: Usage = Usage.LOANABLE, *, parts: int = 1, part: int = 1,
        afi: int = IN_STOCK) -> SimulatedTag:
    data = encode_tag(TagData("28560-3", usage, item, parts, part, "VN", "VN-THCS01"))
    memory = bytearray(28 * 4)
    memory[:len(data)] = data
    return SimulatedTag(uid=f"E0040170{next(_serial):08X}", afi=afi, memory=memory)


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@dataclass
class Kiosk:
    sim: SimulatedPad
    pad: RfidPad
    scanner: SimulatedScanner
    out: io.StringIO

    def afi(self, *tags: SimulatedTag) -> list[int]:
        return [self.sim.tag(t.uid).afi for t in tags]

    def printed(self) -> str:
        return self.out.getvalue()


@pytest.fixture
def kiosk(library) -> Iterator[Kiosk]:  # type: ignore[no-untyped-def]
    link = library.station("kiosk-rfid")
    config = StationConfig(site=library.config.site, station="kiosk-rfid", language="en",
                           rfid=RfidConfig(poll_interval_s=0.05, absent_after_s=0.3))
    sim = SimulatedPad()
    pad = RfidPad(SimulatedRfidReader(sim, name="rfid"), config.rfid)
    scanner, out, stop = SimulatedScanner(), io.StringIO(), threading.Event()
    runner = threading.Thread(target=run_headless, args=(config, link, scanner, out),
                              kwargs={"stop": stop, "tick_interval": 0.05, "rfid_pad": pad},
                              name="headless-kiosk")
    runner.start()
    wait_for(lambda: pad.state == "ok" and scanner.state == "ok")
    yield Kiosk(sim, pad, scanner, out)
    stop.set()
    runner.join(10)
    assert not runner.is_alive(), "the station did not stop"


def ledger(library) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(op, accession number) of every ledger entry, in order."""
    with db.session_factory(library.server.engine)() as session:
        rows = session.execute(select(LedgerEntry.op, Copy.accession_number)
                               .join(Copy, Copy.id == LedgerEntry.copy_id)
                               .order_by(LedgerEntry.seq))
        return [(op, number) for op, number in rows]


def request_ids(library) -> list[str]:  # type: ignore[no-untyped-def]
    with db.session_factory(library.server.engine)() as session:
        return list(session.scalars(select(LedgerEntry.request_id)))


def test_a_card_and_three_books_at_once_then_their_return(kiosk: Kiosk, library) -> None:  # type: ignore[no-untyped-def]
    books = [tag("TN00001"), tag("TN00002"), tag("TN00003")]
    reference = tag("TK00003")  # read in the library only
    kiosk.sim.place(*books, reference, tag(TEACHER, Usage.PATRON_CARD))

    wait_for(lambda: kiosk.afi(*books) == [ON_LOAN] * 3)
    wait_for(lambda: "TK00003" in kiosk.printed())
    assert sorted(ledger(library)) == [("checkout", f"TN.0000{n}") for n in (1, 2, 3)]
    ids = request_ids(library)
    assert len(set(ids)) == 3  # one request, one id, per book
    assert kiosk.afi(reference) == [IN_STOCK]  # refused: its tag is left in stock
    assert kiosk.printed().count(text("item.borrowed", "en", title=DE_MEN, due="01/12/2026")[:12]) == 3

    # The same stack left on the pad is not lent again.
    time.sleep(1.0)
    assert len(ledger(library)) == 3

    # Return mode, from the terminal; the books come back to the pad one by one.
    kiosk.sim.clear()
    time.sleep(0.5)
    assert kiosk.scanner.feed("tra")
    wait_for(lambda: text("return.mode", "en") in kiosk.printed())
    for book in books:
        kiosk.sim.place(book)
        wait_for(lambda: kiosk.sim.tag(book.uid).afi == IN_STOCK)  # noqa: B023
        kiosk.sim.remove(book.uid)
    wait_for(lambda: len(ledger(library)) == 6)
    assert sorted(ledger(library))[3:] == [("return", f"TN.0000{n}") for n in (1, 2, 3)]
    assert kiosk.pad.state == "ok"


def test_an_incomplete_set_is_refused_here_and_a_lifted_tag_is_lent_once(kiosk: Kiosk, library) -> None:  # type: ignore[no-untyped-def]
    kiosk.sim.place(tag(TEACHER, Usage.PATRON_CARD))
    wait_for(lambda: "Hello Hà!" in kiosk.printed())

    # Part 1 of a 2-part set, alone: refused at the station, never sent to the server.
    part1 = tag("GK00001", parts=2, part=1)
    kiosk.sim.place(part1)
    wait_for(lambda: text("rfid.incomplete_set", "en", n=2) in kiosk.printed())
    assert ledger(library) == [] and kiosk.afi(part1) == [IN_STOCK]
    kiosk.sim.remove(part1.uid)

    # A book lifted while its blocks are read, then laid down again: one loan.
    book = tag("TN00004")
    kiosk.sim.place(book)
    kiosk.sim.leave_after(book.uid, 0)
    time.sleep(0.5)
    assert ledger(library) == []
    kiosk.sim.place(book)
    wait_for(lambda: kiosk.afi(book) == [ON_LOAN])
    kiosk.sim.remove(book.uid)
    time.sleep(0.5)
    kiosk.sim.place(book)  # back on the pad in the same session: not lent again
    time.sleep(0.5)
    assert ledger(library) == [("checkout", "TN.00004")]
    assert "already" not in kiosk.printed()
    assert kiosk.pad.state == "ok"
