"""The DIY bridge's line protocol, line by line: the exact lines written, scripted replies parsed."""

from __future__ import annotations

import pytest

from drivers.rfid.lineproto import LineReader, LineReaderConfig
from drivers.rfid.reader import (
    AfiNotConfirmed,
    ReaderFault,
    ReaderNotResponding,
    ReaderProtocolError,
    ReaderStatusError,
    ReaderUnavailable,
    TagCommunicationError,
    TagError,
    TagInfo,
    TagNotFound,
    TagRead,
)
from drivers.rfid.transport import ScriptedTransport

UID = "E004010012345678"
UID2 = "E0040100ABCDEF01"
HELLO = b"VERSION 1 pn5180-bridge 0.3\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bridge(*, hello: bytes = HELLO) -> ScriptedTransport:
    return ScriptedTransport().expect(b"VERSION\n", hello)


def make_reader(port: ScriptedTransport, clock: Clock | None = None, **settings: object) -> LineReader:
    reader = LineReader(LineReaderConfig(port="scripted", **settings), transport=port,
                        clock=clock or Clock())
    reader.open()
    return reader


# --- handshake -----------------------------------------------------------------------------

def test_handshake_after_a_boot_banner_and_noise() -> None:
    port = bridge(hello=b"\xff\xfe\x00garbage\n# booting\n\nVERSION 1 pn5180-bridge 0.3 (esp32)\r\n")
    reader = make_reader(port)
    assert reader.state == "ok"
    assert reader.firmware == "pn5180-bridge 0.3 (esp32)"
    port.assert_done()


def test_a_bridge_that_never_answers_is_faulty_and_tried_again_later() -> None:
    clock = Clock()
    port = ScriptedTransport().expect(b"VERSION\n").expect(b"VERSION\n").expect(b"VERSION\n")
    reader = make_reader(port, clock)
    assert reader.state == "fault"
    assert not port.is_open
    port.expect(b"VERSION\n", HELLO)
    clock.now += 0.5
    assert reader.check() == "ok"
    port.assert_done()


def test_another_protocol_version_is_refused() -> None:
    port = bridge(hello=b"VERSION 2 future-bridge\n")
    reader = make_reader(port)
    assert reader.state == "fault"
    port.assert_done()


# --- inventory -----------------------------------------------------------------------------

def test_inventory_of_an_empty_pad() -> None:
    port = bridge().expect(b"INV\n", b"END 0\n")
    assert make_reader(port).inventory() == []
    port.assert_done()


def test_inventory_of_one_tag() -> None:
    port = bridge().expect(b"INV\n", b"TAG E004010012345678 00 07\nEND 1\n")
    assert make_reader(port).inventory() == [TagRead(uid=UID, dsfid=0x00, afi=0x07)]
    port.assert_done()


def test_inventory_of_several_tags_with_comments_and_crlf() -> None:
    port = bridge().expect(b"INV\n", b"TAG e004010012345678 00 --\r\n# slot 7 collided, retried\r\n"
                                     b"TAG E0040100ABCDEF01 12 C2\r\nEND 2\r\n")
    assert [(tag.uid, tag.dsfid, tag.afi) for tag in make_reader(port).inventory()] == [
        (UID, 0x00, None), (UID2, 0x12, 0xC2)]
    port.assert_done()


def test_a_count_that_does_not_match_is_read_again_after_a_resync() -> None:
    port = (bridge().expect(b"INV\n", b"TAG E004010012345678 00 07\nEND 2\n")
            .expect(b"PING 1\n", b"PONG 1\n")
            .expect(b"INV\n", b"TAG E004010012345678 00 07\nEND 1\n"))
    assert len(make_reader(port).inventory()) == 1
    port.assert_done()


def test_a_late_reply_is_never_taken_for_the_next_one() -> None:
    port = (bridge().expect(b"INV\n")  # no answer in time...
            .expect(b"PING 1\n", b"TAG E004010012345678 00 07\nEND 1\nPONG 1\n")  # ...then late
            .expect(b"INV\n", b"END 0\n"))
    assert make_reader(port).inventory() == []
    port.assert_done()


def test_a_silent_bridge_is_a_fault() -> None:
    port = bridge().expect(b"INV\n").expect(b"PING 1\n")
    reader = make_reader(port)
    with pytest.raises(ReaderNotResponding, match="no answer to PING"):
        reader.inventory()
    assert reader.state == "fault"
    port.expect(b"INV\n", b"END 0\n")
    assert reader.inventory() == []
    assert reader.state == "ok"
    port.assert_done()


@pytest.mark.parametrize("garbage, why", [
    (b"TAG 12345678001004E0 00 07\nEND 1\n", "least significant byte first"),
    (b"TAG E004010012345678 0 07\nEND 1\n", "two hex digits"),
    (b"\xe0\x04 binary\n", "not ASCII"),
    (b"A" * 400 + b"\n", "cut short or too long"),
    (b"TAG E004010012345678 00", "cut short"),
    (b"DATA 00\n", "unexpected line"),
])
def test_garbage_is_a_clear_error_after_the_retries(garbage: bytes, why: str) -> None:
    port = bridge()
    for attempt in range(3):
        if attempt:
            port.expect(f"PING {attempt}\n".encode(), f"PONG {attempt}\n".encode())
        port.expect(b"INV\n", garbage)
    reader = make_reader(port)
    with pytest.raises(ReaderProtocolError, match=why):
        reader.inventory()
    assert reader.state == "fault"
    port.assert_done()


# --- blocks, system information, AFI -------------------------------------------------------

def test_read_blocks_in_pieces() -> None:
    port = (bridge().expect(b"RD E004010012345678 0 2\n", b"DATA 1122334455667788\n")
            .expect(b"RD E004010012345678 2 1\n", b"DATA 99aabbcc\n"))
    reader = make_reader(port, max_blocks_per_read=2)
    assert reader.read_blocks(UID, 0, 3) == bytes.fromhex("112233445566778899AABBCC")
    port.assert_done()


def test_data_of_the_wrong_length_is_read_again() -> None:
    port = (bridge().expect(b"RD E004010012345678 0 2\n", b"DATA 11223344556677\n")
            .expect(b"PING 1\n", b"PONG 1\n")
            .expect(b"RD E004010012345678 0 2\n", b"DATA 1122334455667788\n"))
    assert make_reader(port).read_blocks(UID, 0, 2) == bytes.fromhex("1122334455667788")
    port.assert_done()


def test_system_information() -> None:
    port = bridge().expect(b"SYS E004010012345678\n", b"SYS E004010012345678 00 07 28 4 01\n")
    assert make_reader(port).system_info(UID) == TagInfo(uid=UID, dsfid=0, afi=0x07, block_size=4,
                                                         block_count=28, ic_ref=0x01)
    port.assert_done()


def test_system_information_about_another_tag_is_not_taken() -> None:
    port = (bridge().expect(b"SYS E004010012345678\n", b"SYS E0040100ABCDEF01 00 07 28 4 --\n")
            .expect(b"PING 1\n", b"PONG 1\n")
            .expect(b"SYS E004010012345678\n", b"SYS E004010012345678 00 C2 28 4 --\n"))
    assert make_reader(port).read_afi(UID) == 0xC2
    port.assert_done()


def test_write_afi_is_read_back_and_written_again() -> None:
    port = (bridge()
            .expect(b"WAFI E004010012345678 C2\n", b"ERR WRITE tag did not confirm\n")
            .expect(b"SYS E004010012345678\n", b"SYS E004010012345678 00 07 28 4 01\n")
            .expect(b"WAFI E004010012345678 C2\n", b"OK\n")
            .expect(b"SYS E004010012345678\n", b"SYS E004010012345678 00 C2 28 4 01\n"))
    make_reader(port).write_afi(UID, 0xC2)
    port.assert_done()


def test_write_afi_that_never_sticks() -> None:
    port = bridge()
    for _ in range(2):
        port.expect(b"WAFI E004010012345678 07\n", b"OK\n")
        port.expect(b"SYS E004010012345678\n", b"SYS E004010012345678 00 C2 28 4 01\n")
    with pytest.raises(AfiNotConfirmed, match="read back 0xC2"):
        make_reader(port, afi_write_attempts=2).write_afi(UID, 0x07)
    port.assert_done()


# --- errors --------------------------------------------------------------------------------

def test_a_tag_that_left_is_asked_again_then_reported() -> None:
    port = bridge()
    for _ in range(3):
        port.expect(b"RD E004010012345678 0 1\n", b"ERR NOTAG tag did not answer\n")
    reader = make_reader(port)
    with pytest.raises(TagNotFound, match=UID):
        reader.read_blocks(UID, 0, 1)
    assert reader.state == "ok"
    port.assert_done()


def test_an_rf_error_is_asked_again() -> None:
    port = (bridge().expect(b"INV\n", b"ERR RF collisions not resolved\n")
            .expect(b"INV\n", b"END 0\n"))
    assert make_reader(port).inventory() == []
    port.assert_done()


def test_rf_errors_that_persist() -> None:
    port = bridge()
    for _ in range(3):
        port.expect(b"INV\n", b"ERR RF field noise\n")
    with pytest.raises(TagCommunicationError, match="RF error: field noise"):
        make_reader(port).inventory()
    port.assert_done()


def test_the_tags_own_error() -> None:
    port = bridge().expect(b"RD E004010012345678 40 1\n", b"ERR TAG 10 block 40 does not exist\n")
    with pytest.raises(TagError, match="0x10: block not available") as caught:
        make_reader(port).read_blocks(UID, 40, 1)
    assert caught.value.iso_code == 0x10


def test_a_command_the_bridge_does_not_know() -> None:
    port = bridge().expect(b"WAFI E004010012345678 C2\n", b"ERR SYNTAX unknown command WAFI\n")
    reader = make_reader(port)
    with pytest.raises(ReaderStatusError, match="SYNTAX unknown command WAFI"):
        reader._write_afi_once(UID, 0xC2)
    assert reader.state == "ok"


def test_a_hardware_fault_on_the_bridge() -> None:
    port = bridge().expect(b"INV\n", b"ERR HW PN5180 does not answer on SPI\n")
    reader = make_reader(port)
    with pytest.raises(ReaderFault, match="hardware fault: PN5180 does not answer"):
        reader.inventory()
    assert reader.state == "fault"


# --- hot-plug ------------------------------------------------------------------------------

def test_unplugged_mid_inventory_then_back_with_a_new_handshake() -> None:
    clock = Clock()
    port = bridge().expect(b"INV\n").unplug(failed_opens=1)
    reader = make_reader(port, clock)
    with pytest.raises(ReaderUnavailable, match="unplugged"):
        reader.inventory()
    assert reader.state == "fault"
    clock.now += 0.5
    assert reader.check() == "fault"
    clock.now += 1.0
    port.expect(b"VERSION\n", b"VERSION 1 pn5180-bridge 0.4\n").expect(b"INV\n", b"END 0\n")
    assert reader.inventory() == []
    assert (reader.state, reader.firmware) == ("ok", "pn5180-bridge 0.4")
    port.assert_done()
