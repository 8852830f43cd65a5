"""The return box against the real circulation rules (tests/kiosk/conftest.py), with a
simulated chute reader, simulated pins and a recording of what it says."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from drivers.base import Read
from drivers.gpio import SimulatedGpio, SimulatedGpioConfig, create_gpio
from drivers.rfid.simulated import SimulatedPad, SimulatedRfidReader, SimulatedTag
from drivers.rfid.tagdata import Usage
from kiosk.config import ReturnboxConfig, RfidConfig
from kiosk.messages import text
from kiosk.returnbox import AFI_NOT_WRITTEN, OFFLINE, SET, UNREADABLE, ReturnBox
from protocol import CheckoutArgs, Op, Reply, ReturnArgs, ReturnboxFullData, ReturnboxUnreturnedData

from station_parts import Clock, IN_STOCK, ON_LOAN, Sound, book

# The fixtures' types (tests/*/conftest.py): not imported, since several test folders
# have a module called conftest.
Library = Network = Any


class BoxLink:
    """The real library behind a network that can go down; events recorded."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.events: list[tuple[str, BaseModel]] = []

    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        return self.network.request(op, args, timeout=timeout)

    def publish_event(self, type_: str, data: BaseModel) -> bool:
        if self.network.down:
            return False
        self.events.append((type_, data))
        return True

    def of_type(self, type_: str) -> list:
        return [data for kind, data in self.events if kind == type_]


@pytest.fixture
def pad() -> SimulatedPad:
    return SimulatedPad()


@pytest.fixture
def pins() -> SimulatedGpio:
    board = create_gpio(SimulatedGpioConfig.model_validate({
        "outputs": {"light_green": {"pin": 17}, "light_red": {"pin": 27}},
        "inputs": {"bin_full": {"pin": 22}}}))
    assert isinstance(board, SimulatedGpio)
    yield board
    board.close()


@pytest.fixture
def link(network: Network) -> BoxLink:
    return BoxLink(network)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(pad: SimulatedPad, link: BoxLink, pins: SimulatedGpio, clock: Clock) -> ReturnBox:
    reader = SimulatedRfidReader(pad)
    reader.open()
    return ReturnBox(link, rfid=RfidConfig(), config=ReturnboxConfig(feedback_s=5), reader=reader,
                     pins=pins, sound=Sound(), language="en", clock=clock)


def lend(library: Library, item: str, patron: str = "HS-2024-0001") -> None:
    reply = library.backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=patron, item=item))
    assert reply.ok, reply


def test_a_lent_book_dropped_in_is_returned_and_secured(box: ReturnBox, pad: SimulatedPad,
                                                        library: Library, pins: SimulatedGpio) -> None:
    lend(library, "TN00001")
    pad.place(book(1, "TN00001", ON_LOAN))
    [outcome] = box.poll_once()
    assert outcome.returned and outcome.item == "TN.00001" and outcome.code == ""
    assert library.loans_of("HS-2024-0001") == []
    assert pad.tag("E004015000000001").afi == IN_STOCK
    assert pins.output("light_green") and not pins.output("light_red")
    assert box.sound.chimes == ["ok"]  # type: ignore[union-attr]
    assert box.sound.said == [text("returnbox.returned", "en", title="Dế Mèn phiêu lưu ký")]  # type: ignore[union-attr]
    assert box.link.events == []  # type: ignore[attr-defined]


def test_a_book_lying_in_the_chute_is_returned_once(box: ReturnBox, pad: SimulatedPad,
                                                    library: Library, clock: Clock,
                                                    link: BoxLink) -> None:
    lend(library, "TN00001")
    pad.place(book(1, "TN00001", ON_LOAN))
    assert len(box.poll_once()) == 1
    for _ in range(20):
        clock.now += 0.2
        assert box.poll_once() == []
    # Not returned a second time, so no "not on loan" refusal reported either.
    assert link.of_type("returnbox.unreturned") == []
    assert [o.returned for o in box.outcomes] == [True]


def test_a_barcode_is_returned_once_within_the_window(box: ReturnBox, library: Library,
                                                      clock: Clock) -> None:
    lend(library, "TN00002")
    outcome = box.on_read(Read(code="TN00002"))
    assert outcome is not None and outcome.returned
    assert box.on_read(Read(code="TN00002")) is None  # the scanner read it twice
    clock.now += 11
    again = box.on_read(Read(code="TN00002"))
    assert again is not None and not again.returned and again.code == "item_not_on_loan"
    assert box.on_read(Read(code="  ")) is None


def test_a_book_not_on_loan_is_reported_unreturned_and_its_tag_secured(
        box: ReturnBox, pad: SimulatedPad, link: BoxLink, pins: SimulatedGpio,
        library: Library) -> None:
    pad.place(book(2, "TN00002", afi=ON_LOAN))  # a kiosk's AFI write at return failed
    [outcome] = box.poll_once()
    assert not outcome.returned and outcome.code == "item_not_on_loan"
    reason = library.refusal(Op.LOAN_RETURN, ReturnArgs(item="TN00002"))
    assert link.of_type("returnbox.unreturned") == [
        ReturnboxUnreturnedData(item="TN00002", code="item_not_on_loan", message=reason)]
    assert pad.tag("E004015000000002").afi == IN_STOCK
    assert pins.output("light_red") and not pins.output("light_green")
    assert box.sound.chimes == ["error"]  # type: ignore[union-attr]
    assert box.sound.said == [text("returnbox.not_returned", "en", reason=reason)]  # type: ignore[union-attr]


def test_an_unknown_item_is_reported_and_its_tag_left_alone(box: ReturnBox, pad: SimulatedPad,
                                                            link: BoxLink) -> None:
    pad.place(book(3, "XX99999", ON_LOAN))
    [outcome] = box.poll_once()
    assert outcome.code == "unknown_item"
    assert [u.item for u in link.of_type("returnbox.unreturned")] == ["XX99999"]
    assert pad.tag("E004015000000003").afi == ON_LOAN


def test_unreadable_tags_and_sets_go_to_the_librarian(box: ReturnBox, pad: SimulatedPad,
                                                      link: BoxLink) -> None:
    pad.place(SimulatedTag(uid="E004015000000004", memory=bytearray(b"\xde\xad" * 56)),
              book(5, "TN00003", ON_LOAN, parts=2, part=1),
              book(6, "HS-2024-0001", ON_LOAN, usage=Usage.PATRON_CARD))  # a card dropped in: ignored
    outcomes = {o.code: o for o in box.poll_once()}
    assert set(outcomes) == {UNREADABLE, SET}
    assert outcomes[UNREADABLE].item == "E004015000000004"
    assert outcomes[SET].item == "TN00003" and "part 1/2" in outcomes[SET].message
    assert sorted(u.code for u in link.of_type("returnbox.unreturned")) == [SET, UNREADABLE]


def test_offline_the_book_is_reported_when_the_link_returns(box: ReturnBox, pad: SimulatedPad,
                                                            link: BoxLink, network: Network,
                                                            library: Library) -> None:
    lend(library, "TN00001")
    network.down = True
    pad.place(book(1, "TN00001", ON_LOAN))
    [outcome] = box.poll_once()
    assert not outcome.returned and outcome.code == OFFLINE
    assert box.sound.said == [text("returnbox.offline", "en")]  # type: ignore[union-attr]
    assert pad.tag("E004015000000001").afi == ON_LOAN  # not returned: still on loan
    assert link.events == [] and len(box.events) == 1
    network.down = False
    box.on_connect()
    deadline = time.monotonic() + 5
    while not link.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [(u.item, u.code) for u in link.of_type("returnbox.unreturned")] == [("TN00001", OFFLINE)]


def test_a_returned_book_whose_afi_will_not_stick_is_reported(box: ReturnBox, pad: SimulatedPad,
                                                              link: BoxLink, library: Library) -> None:
    lend(library, "TN00001")
    tag = book(1, "TN00001", ON_LOAN)
    tag.afi_sticks = False
    pad.place(tag)
    [outcome] = box.poll_once()
    assert outcome.returned and outcome.code == AFI_NOT_WRITTEN
    assert library.loans_of("HS-2024-0001") == []
    [report] = link.of_type("returnbox.unreturned")
    assert (report.item, report.code) == ("TN.00001", AFI_NOT_WRITTEN)


def test_bin_full_is_reported_once_and_cleared(box: ReturnBox, pins: SimulatedGpio,
                                               link: BoxLink, library: Library) -> None:
    pins.drive("bin_full", True)
    pins.drive("bin_full", True)  # no edge: no second report
    assert link.of_type("returnbox.full") == [ReturnboxFullData(full=True)]
    assert box.sound.said == [text("returnbox.full", "en")]  # type: ignore[union-attr]
    lend(library, "TN00001")
    box.on_read(Read(code="TN00001"))  # still accepted, and the box says it is full
    assert box.sound.said[-1].endswith(text("returnbox.full", "en"))  # type: ignore[union-attr]
    pins.drive("bin_full", False)
    assert link.of_type("returnbox.full") == [ReturnboxFullData(full=True), ReturnboxFullData(full=False)]


def test_a_bin_full_at_start_is_reported(pad: SimulatedPad, link: BoxLink, pins: SimulatedGpio) -> None:
    pins.drive("bin_full", True)
    box = ReturnBox(link, rfid=RfidConfig(), config=ReturnboxConfig(), pins=pins)
    assert box.full and link.of_type("returnbox.full") == [ReturnboxFullData(full=True)]
    pins.drive("bin_full", False)
    pins.drive("bin_full", False)
    assert link.of_type("returnbox.full")[-1] == ReturnboxFullData(full=False)
    assert len(link.of_type("returnbox.full")) == 2


def test_a_box_without_reader_or_pins_returns_barcodes(link: BoxLink, library: Library) -> None:
    box = ReturnBox(link, rfid=RfidConfig(), config=ReturnboxConfig())
    lend(library, "TN00003")
    assert box.poll_once() == []
    outcome = box.return_code("TN00003")
    assert outcome is not None and outcome.returned


def test_a_faulty_reader_is_no_crash(box: ReturnBox, pad: SimulatedPad) -> None:
    pad.inject("junk", times=10)
    pad.place(book(1, "TN00001", ON_LOAN))
    assert box.poll_once() == []


def test_the_loop_returns_what_falls_in_until_stopped(pad: SimulatedPad, link: BoxLink,
                                                      library: Library) -> None:
    reader = SimulatedRfidReader(pad)
    reader.open()
    box = ReturnBox(link, rfid=RfidConfig(poll_interval_s=0.02), config=ReturnboxConfig(),
                    reader=reader)
    lend(library, "TN00001")
    stop = threading.Event()
    runner = threading.Thread(target=box.run, args=(stop,))
    runner.start()
    try:
        pad.place(book(1, "TN00001", ON_LOAN))
        deadline = time.monotonic() + 5
        while not box.outcomes and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        runner.join(5)
    assert not runner.is_alive()
    assert [o.item for o in box.outcomes] == ["TN.00001"] and box.outcomes[0].returned
