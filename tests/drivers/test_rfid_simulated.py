"""The reader's twin: the pad, its faults, its config, and the byte-level emulators."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drivers.rfid.feig import FeigReader, FeigReaderConfig
from drivers.rfid.reader import (
    ReaderProtocolError,
    ReaderUnavailable,
    TagNotFound,
    create_reader,
    parse_reader_config,
)
from drivers.rfid.simulated import (
    EmulatedTransport,
    FeigEmulator,
    LineBridgeEmulator,
    SimulatedPad,
    SimulatedRfidReader,
    SimulatedTag,
    TagAbsent,
)
from drivers.rfid.transport import TransportError

UID = "E004015000000001"


def test_a_tag_has_28_blocks_of_4_bytes_and_an_in_stock_afi() -> None:
    tag = SimulatedTag(uid="e0:04:01:50:00:00:00:01")
    assert (tag.uid, tag.block_count, tag.block_size, tag.afi, tag.dsfid) == (UID, 28, 4, 0x07, 0)
    with pytest.raises(ValueError, match="whole blocks"):
        SimulatedTag(uid=UID, memory=bytearray(10))
    with pytest.raises(ValueError, match="AFI"):
        SimulatedTag(uid=UID, afi=300)


def test_placing_and_lifting_books() -> None:
    pad = SimulatedPad([SimulatedTag(uid=UID)])
    pad.place(SimulatedTag(uid="E004015000000002"))
    assert pad.uids == [UID, "E004015000000002"]
    assert pad.remove(UID.lower()) is not None
    assert pad.remove(UID) is None
    pad.clear()
    assert pad.inventory() == []


def test_an_inventory_is_a_snapshot() -> None:
    pad = SimulatedPad([SimulatedTag(uid=UID)])
    pad.inventory()[0].afi = 0xC2
    assert pad.tag(UID).afi == 0x07


def test_a_tag_leaves_after_so_many_operations() -> None:
    pad = SimulatedPad([SimulatedTag(uid=UID)])
    pad.leave_after(UID, 2)
    pad.read(UID, 0, 1)
    pad.system_info(UID)
    with pytest.raises(TagAbsent):
        pad.read(UID, 0, 1)
    assert pad.uids == []


def test_faults_hit_one_exchange_each_in_order() -> None:
    pad = SimulatedPad()
    pad.inject("crc")
    pad.inject("silence", times=2)
    assert [pad.next_fault() for _ in range(4)] == ["crc", "silence", "silence", None]


def test_the_simulated_reader_from_a_station_config() -> None:
    config = parse_reader_config({"type": "simulated", "name": "pad", "plugged": False,
                                  "tags": [{"uid": UID, "afi": 0xC2, "data": "1101"}]})
    reader = create_reader(config)
    assert isinstance(reader, SimulatedRfidReader)
    reader.open()
    assert reader.state == "fault"  # the demo can start with the reader unplugged
    with pytest.raises(ReaderUnavailable, match="unplugged"):
        reader.inventory()
    reader.pad.replug()
    assert reader.check() == "ok"
    assert [(tag.uid, tag.afi) for tag in reader.inventory()] == [(UID, 0xC2)]
    assert reader.read_blocks(UID, 0, 1) == bytes.fromhex("11010000")
    assert reader.name == "pad"


def test_a_simulated_config_is_checked() -> None:
    with pytest.raises(ValidationError, match="not an ISO 15693 UID"):
        parse_reader_config({"type": "simulated", "tags": [{"uid": "123"}]})
    with pytest.raises(ValidationError, match="more than 112 bytes"):
        parse_reader_config({"type": "simulated", "tags": [{"uid": UID, "data": "00" * 113}]})


def test_the_simulated_reader_retries_like_a_real_one() -> None:
    pad = SimulatedPad([SimulatedTag(uid=UID)])
    reader = SimulatedRfidReader(pad, retries=1)
    reader.open()
    pad.inject("junk")
    assert len(reader.inventory()) == 1
    pad.inject("crc", times=2)
    with pytest.raises(ReaderProtocolError, match="corrupted"):
        reader.inventory()
    assert reader.state == "fault"
    pad.leave_after(UID, 0)
    with pytest.raises(TagNotFound):
        reader.read_afi(UID)
    assert reader.state == "ok"


def test_the_feig_emulator_pages_a_big_stack_and_can_use_advanced_frames() -> None:
    pad = SimulatedPad(SimulatedTag(uid=f"E0040150{n:08X}") for n in range(60))
    paged = FeigEmulator(pad)
    port = EmulatedTransport(paged)
    reader = FeigReader(FeigReaderConfig(port="emulated"), transport=port)
    reader.open()
    assert len(reader.inventory()) == 60   # three replies: 24, 24 and 12 data sets
    big = FeigReader(FeigReaderConfig(port="emulated"),
                     transport=EmulatedTransport(FeigEmulator(pad, data_sets_per_reply=100)))
    big.open()
    assert len(big.inventory()) == 60      # one advanced frame of 609 bytes


def test_the_feig_emulator_ignores_corrupted_requests_and_other_addresses() -> None:
    emulator = FeigEmulator(SimulatedPad(), com_adr=0x05)
    assert emulator.respond(bytes.fromhex("07 FF B0 01 00 1C 57")) == b""
    assert emulator.respond(bytes.fromhex("07 03 B0 01 00 03 B6")) == b""
    assert emulator.respond(bytes.fromhex("07 FF B0 01 00 1C 56"))[:4] == bytes.fromhex("06 05 B0 01")


def test_the_line_emulator_answers_as_the_protocol_says() -> None:
    emulator = LineBridgeEmulator(SimulatedPad([SimulatedTag(uid=UID)]))
    assert emulator.respond(b"ping 7\n") == b"PONG 7\n"
    assert emulator.respond(b"INV\n") == f"TAG {UID} 00 07\nEND 1\n".encode()
    assert emulator.respond(b"RD E004015000000002 0 1\n").startswith(b"ERR NOTAG")
    assert emulator.respond(b"RD E004015000000001 0 33\n").startswith(b"ERR RANGE")
    assert emulator.respond(b"RD E004015000000001 27 2\n").startswith(b"ERR TAG 10")
    assert emulator.respond(b"FORMAT\n").startswith(b"ERR SYNTAX")


def test_an_emulated_port_is_gone_while_the_pad_is_unplugged() -> None:
    pad = SimulatedPad()
    port = EmulatedTransport(LineBridgeEmulator(pad))
    port.open()
    pad.unplug()
    with pytest.raises(TransportError):
        port.write(b"INV\n")
    with pytest.raises(TransportError):
        port.open()
    pad.replug()
    port.open()
    port.write(b"INV\n")
    assert port.read_line(timeout=1, max_size=100) == b"END 0\n"
