"""What every RFID reader driver does, whatever it speaks: one suite, run on each.

The drivers of real readers run end to end against emulated devices (`FeigEmulator`,
`LineBridgeEmulator` over an `EmulatedTransport`); the simulated reader drives the same
pad directly. The pad is the hardware edge: tags on it, and the faults it injects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from drivers.rfid.feig import FeigReader, FeigReaderConfig
from drivers.rfid.lineproto import LineReader, LineReaderConfig
from drivers.rfid.reader import (
    AfiNotConfirmed,
    ReaderFault,
    ReaderNotResponding,
    ReaderUnavailable,
    RfidReader,
    TagCommunicationError,
    TagError,
    TagNotFound,
)
from drivers.rfid.simulated import (
    EmulatedTransport,
    FeigEmulator,
    LineBridgeEmulator,
    SimulatedPad,
    SimulatedRfidReader,
    SimulatedTag,
)

FAULTS = ["crc", "junk", "silence", "rf"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    reader: RfidReader
    pad: SimulatedPad
    clock: Clock


def make_reader(kind: str, pad: SimulatedPad, clock: Clock) -> RfidReader:
    if kind == "simulated":
        return SimulatedRfidReader(pad, max_blocks_per_read=8, clock=clock)
    if kind == "feig":
        return FeigReader(FeigReaderConfig(port="emulated", max_blocks_per_read=8),
                          transport=EmulatedTransport(FeigEmulator(pad)), clock=clock)
    return LineReader(LineReaderConfig(port="emulated", max_blocks_per_read=8),
                      transport=EmulatedTransport(LineBridgeEmulator(pad)), clock=clock)


@pytest.fixture(params=["simulated", "feig", "line"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    clock, pad = Clock(), SimulatedPad()
    reader = make_reader(request.param, pad, clock)
    reader.open()
    yield Rig(reader, pad, clock)
    reader.close()


def book(n: int, *, afi: int = 0x07, dsfid: int = 0x00) -> SimulatedTag:
    tag = SimulatedTag(uid=f"E0040150{n:08X}", afi=afi, dsfid=dsfid)
    tag.memory[:] = bytes((n + i) & 0xFF for i in range(len(tag.memory)))
    return tag


def test_states_from_absent_to_ok_and_back(rig: Rig) -> None:
    assert rig.reader.state == "ok"
    assert rig.reader.check() == "ok"
    rig.reader.close()
    rig.reader.close()
    assert rig.reader.state == "absent"
    with pytest.raises(ReaderUnavailable):
        rig.reader.inventory()
    rig.reader.open()
    assert rig.reader.state == "ok"


def test_a_new_reader_is_absent_until_opened() -> None:
    for kind in ("simulated", "feig", "line"):
        assert make_reader(kind, SimulatedPad(), Clock()).state == "absent"


@pytest.mark.parametrize("count", [0, 1, 3, 30])
def test_inventory_reads_every_tag_once(rig: Rig, count: int) -> None:
    tags = [book(n, dsfid=n % 3) for n in range(count)]
    rig.pad.place(*tags)
    found = rig.reader.inventory()
    assert sorted((tag.uid, tag.dsfid) for tag in found) == sorted((t.uid, t.dsfid) for t in tags)
    assert all(tag.afi in (None, 0x07) for tag in found)


def test_read_blocks_returns_the_tags_memory(rig: Rig) -> None:
    tag = book(7)
    rig.pad.place(tag)
    assert rig.reader.read_blocks(tag.uid, 0, 28) == bytes(tag.memory)
    assert rig.reader.read_blocks(tag.uid.lower(), 9, 3) == bytes(tag.memory[36:48])


def test_blocks_beyond_the_tags_memory(rig: Rig) -> None:
    rig.pad.place(book(1))
    with pytest.raises(TagError, match="0x10"):
        rig.reader.read_blocks(book(1).uid, 26, 4)
    assert rig.reader.state == "ok"


def test_system_information(rig: Rig) -> None:
    rig.pad.place(book(2, afi=0xC2, dsfid=0x3E))
    info = rig.reader.system_info(book(2).uid)
    assert (info.uid, info.dsfid, info.afi, info.block_size, info.block_count) == (
        book(2).uid, 0x3E, 0xC2, 4, 28)


def test_write_afi_and_read_it_back(rig: Rig) -> None:
    rig.pad.place(book(3))
    rig.reader.write_afi(book(3).uid, 0xC2)
    assert rig.pad.tag(book(3).uid).afi == 0xC2
    assert rig.reader.read_afi(book(3).uid) == 0xC2
    rig.reader.write_afi(book(3).uid, 0x07)
    assert rig.reader.read_afi(book(3).uid) == 0x07


def test_an_afi_that_never_sticks(rig: Rig) -> None:
    tag = book(4)
    tag.afi_sticks = False
    rig.pad.place(tag)
    with pytest.raises(AfiNotConfirmed, match="read back 0x07"):
        rig.reader.write_afi(tag.uid, 0xC2)
    assert rig.reader.state == "ok"


def test_a_tag_that_is_not_there(rig: Rig) -> None:
    with pytest.raises(TagNotFound):
        rig.reader.read_blocks(book(5).uid, 0, 1)
    with pytest.raises(AfiNotConfirmed) as caught:
        rig.reader.write_afi(book(5).uid, 0xC2)
    assert isinstance(caught.value.__cause__, TagNotFound)
    assert rig.reader.state == "ok"


def test_a_book_lifted_in_the_middle_of_a_read(rig: Rig) -> None:
    rig.pad.place(book(6))
    rig.pad.leave_after(book(6).uid, 1)  # the first 8 blocks are read, then it is gone
    with pytest.raises(TagNotFound):
        rig.reader.read_blocks(book(6).uid, 0, 28)
    assert rig.pad.uids == []
    assert rig.reader.inventory() == []


@pytest.mark.parametrize("fault", FAULTS)
def test_one_bad_exchange_is_retried(rig: Rig, fault: str) -> None:
    rig.pad.place(book(8), book(9))
    rig.pad.inject(fault)  # type: ignore[arg-type]
    assert {tag.uid for tag in rig.reader.inventory()} == {book(8).uid, book(9).uid}
    rig.pad.inject(fault)  # type: ignore[arg-type]
    assert rig.reader.read_blocks(book(8).uid, 0, 28) == bytes(book(8).memory)
    assert rig.reader.state == "ok"


def test_a_reader_that_stops_answering_is_a_fault_until_it_answers(rig: Rig) -> None:
    rig.pad.inject("silence", times=50)
    with pytest.raises(ReaderNotResponding):
        rig.reader.inventory()
    assert rig.reader.state == "fault"
    rig.pad.clear_faults()
    assert rig.reader.inventory() == []
    assert rig.reader.state == "ok"


@pytest.mark.parametrize("fault", ["crc", "junk"])
def test_garbled_replies_that_persist(rig: Rig, fault: str) -> None:
    rig.pad.place(book(10))
    rig.pad.inject(fault, times=50)  # type: ignore[arg-type]
    try:
        found = rig.reader.inventory()
    except ReaderFault:
        assert rig.reader.state == "fault"
    else:  # a protocol with framing can skip junk for good
        assert [tag.uid for tag in found] == [book(10).uid]
    rig.pad.clear_faults()
    assert len(rig.reader.inventory()) == 1
    assert rig.reader.state == "ok"


def test_rf_errors_that_persist_are_the_tags_trouble_not_the_readers(rig: Rig) -> None:
    rig.pad.place(book(11))
    rig.pad.inject("rf", times=50)
    with pytest.raises(TagCommunicationError):
        rig.reader.read_blocks(book(11).uid, 0, 4)
    assert rig.reader.state == "ok"


def test_unplugged_and_plugged_back_without_a_restart(rig: Rig) -> None:
    rig.pad.place(book(12))
    assert len(rig.reader.inventory()) == 1
    rig.pad.unplug()
    with pytest.raises(ReaderUnavailable):
        rig.reader.inventory()
    assert rig.reader.state == "fault"
    rig.clock.now += 60
    assert rig.reader.check() == "fault"
    rig.pad.replug()
    rig.clock.now += 60
    assert rig.reader.check() == "ok"
    assert [tag.uid for tag in rig.reader.inventory()] == [book(12).uid]
