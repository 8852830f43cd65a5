"""FEIG ISO Host protocol, byte by byte: the exact frames written, scripted replies parsed.

Three replies below are not ours: `06 00 B0 01 5C 63`, `07 00 B0 83 00 B2 2C` and the
one-tag inventory `11 00 B0 00 01 ... 80 75` were captured from a real FEIG HF reader and
published in bartek-Wlo/MEGA2560_as_AND_gate_for_RS232 (AND.cpp), together with the
inventory request `07 FF B0 01 00 1C 56` this driver writes. They pin the CRC, its byte
order, the UID's byte order and the reader answering a broadcast with its own address.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.rfid.feig import (
    CMD_ISO15693,
    FeigReader,
    FeigReaderConfig,
    Frame,
    FrameError,
    crc16,
    decode_frame,
    encode_frame,
    read_reply,
)
from drivers.rfid.reader import (
    AfiNotConfirmed,
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

H = bytes.fromhex
UID = "E004010012345678"
UID2 = "E0040100ABCDEF01"
UID3 = "E0160000DEADBEEF"

INVENTORY = H("07 FF B0 01 00 1C 56")
INVENTORY_MORE = H("07 FF B0 01 80 14 D2")
NO_TAG = H("06 00 B0 01 5C 63")                                   # captured
RF_ERROR_CAPTURED = H("07 00 B0 83 00 B2 2C")                     # captured
ONE_TAG_CAPTURED = H("11 00 B0 00 01 03 00 E0 16 80 FF 08 00 50 24 80 75")  # captured
THREE_TAGS = H("25 00 B0 00 03 03 00 E0 04 01 00 12 34 56 78 03 00 E0 04 01 00 AB CD EF 01"
               " 03 12 E0 16 00 00 DE AD BE EF 0F 57")
READ_0_2 = H("11 FF B0 23 01 E0 04 01 00 12 34 56 78 00 02 5D 79")
READ_2_1 = H("11 FF B0 23 01 E0 04 01 00 12 34 56 78 02 01 76 78")
TWO_BLOCKS = H("12 00 B0 00 02 04 00 44 33 22 11 00 88 77 66 55 0C 10")
ONE_BLOCK = H("0D 00 B0 00 01 04 00 CC BB AA 99 88 50")
SYSTEM_INFO = H("0F FF B0 2B 01 E0 04 01 00 12 34 56 78 11 A3")
INFO_07 = H("13 00 B0 00 00 E0 04 01 00 12 34 56 78 07 03 1B 01 AF 59")
INFO_C2 = H("13 00 B0 00 00 E0 04 01 00 12 34 56 78 C2 03 1B 01 21 0C")
WRITE_AFI_C2 = H("10 FF B0 27 01 E0 04 01 00 12 34 56 78 C2 79 4F")
OK = H("06 00 B0 00 D5 72")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reply(body: bytes, *, advanced: bool = False, com_adr: int = 0x00) -> bytes:
    return encode_frame(Frame(com_adr, CMD_ISO15693, body, advanced=advanced))


def make_reader(port: ScriptedTransport, clock: Clock | None = None, **settings: object) -> FeigReader:
    reader = FeigReader(FeigReaderConfig(port="scripted", **settings), transport=port,
                        clock=clock or Clock())
    reader.open()
    assert reader.state == "ok"
    return reader


# --- the codec -----------------------------------------------------------------------------

def test_crc_check_value_and_published_frames() -> None:
    # CRC-16/MCRF4XX (reflected 0x1021 = 0x8408, preset 0xFFFF, no final XOR) check value.
    assert crc16(b"123456789") == 0x6F91
    assert encode_frame(Frame(0xFF, 0xB0, H("01 00"))) == INVENTORY
    assert decode_frame(NO_TAG) == Frame(0x00, 0xB0, H("01"))
    assert decode_frame(RF_ERROR_CAPTURED) == Frame(0x00, 0xB0, H("83 00"))
    assert decode_frame(ONE_TAG_CAPTURED).data == H("01 03 00 E0 16 80 FF 08 00 50 24")


def _crc_as_the_manual_writes_it(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 0x0001 else crc >> 1
    return crc


@given(st.binary(max_size=300))
def test_crc_table_matches_the_manuals_algorithm(data: bytes) -> None:
    assert crc16(data) == _crc_as_the_manual_writes_it(data)


@given(st.binary(max_size=300))
def test_crc_appended_lsb_first_leaves_no_residue(data: bytes) -> None:
    crc = crc16(data)
    assert crc16(data + bytes([crc & 0xFF, crc >> 8])) == 0


frames = st.builds(Frame, com_adr=st.integers(0, 255), command=st.integers(0, 255),
                   body=st.binary(max_size=250), advanced=st.booleans())


@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    raw = encode_frame(frame)
    assert decode_frame(raw) == frame
    assert len(raw) == raw[0] or (frame.advanced and int.from_bytes(raw[1:3], "big") == len(raw))


@given(frames, st.data())
def test_any_single_bit_flip_is_caught(frame: Frame, data: st.DataObject) -> None:
    raw = bytearray(encode_frame(frame))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(FrameError):
        decode_frame(bytes(raw))


def test_a_frame_too_long_for_the_standard_length_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="advanced"):
        encode_frame(Frame(0, 0xB0, bytes(251)))


def _read(raw: bytes) -> Frame:
    port = ScriptedTransport().expect(b"?", raw)
    port.open()
    port.write(b"?")
    return read_reply(port, command=CMD_ISO15693, com_adr=0xFF, timeout=0.1)


# Junk that cannot look like the start of a frame that ends in our reply.
clean_junk = st.binary(max_size=40).filter(lambda junk: 0xB0 not in junk and 0x02 not in junk)


@given(clean_junk, st.binary(max_size=100))
def test_junk_before_a_reply_is_skipped(junk: bytes, body: bytes) -> None:
    frame = Frame(0x00, CMD_ISO15693, b"\x00" + body)
    assert _read(junk + encode_frame(frame)) == frame


@given(st.binary(max_size=40), st.binary(max_size=100))
def test_any_junk_gives_the_reply_or_a_frame_error_never_a_wrong_frame(junk: bytes, body: bytes) -> None:
    frame = Frame(0x00, CMD_ISO15693, b"\x00" + body)
    try:
        assert _read(junk + encode_frame(frame)) == frame
    except FrameError:
        pass


@given(st.binary(min_size=1, max_size=60))
def test_junk_alone_or_a_cut_frame_is_an_error_not_a_hang(junk: bytes) -> None:
    with pytest.raises(FrameError):
        _read(junk)
    with pytest.raises(FrameError):
        _read(ONE_TAG_CAPTURED[:-1])


# --- inventory -----------------------------------------------------------------------------

def test_inventory_of_an_empty_pad() -> None:
    port = ScriptedTransport().expect(INVENTORY, NO_TAG)
    assert make_reader(port).inventory() == []
    port.assert_done()


def test_inventory_of_one_tag_as_a_real_reader_answers() -> None:
    port = ScriptedTransport().expect(INVENTORY, ONE_TAG_CAPTURED)
    assert make_reader(port).inventory() == [TagRead(uid="E01680FF08005024", dsfid=0x00)]
    port.assert_done()


def test_inventory_of_a_stack_of_books() -> None:
    port = ScriptedTransport().expect(INVENTORY, THREE_TAGS)
    tags = make_reader(port).inventory()
    assert [(tag.uid, tag.dsfid, tag.afi) for tag in tags] == [
        (UID, 0x00, None), (UID2, 0x00, None), (UID3, 0x12, None)]
    port.assert_done()


def test_inventory_asks_for_more_data_while_the_reader_has_some() -> None:
    more = reply(H("94 01 03 00") + H(UID))
    rest = reply(H("00 02 03 00") + H(UID2) + H("03 00") + H(UID))  # a repeat is kept once
    port = ScriptedTransport().expect(INVENTORY, more).expect(INVENTORY_MORE, rest)
    assert [tag.uid for tag in make_reader(port).inventory()] == [UID, UID2]
    port.assert_done()


def test_inventory_of_thirty_tags_in_an_advanced_frame() -> None:
    uids = [f"E00401000000{n:04X}" for n in range(30)]
    body = bytes([0x00, 30]) + b"".join(H("03 00") + H(uid) for uid in uids)
    port = ScriptedTransport().expect(INVENTORY, reply(body, advanced=True))
    assert [tag.uid for tag in make_reader(port).inventory()] == uids
    port.assert_done()


def test_inventory_skips_transponders_that_are_not_iso15693() -> None:
    body = H("00 02 03 00") + H(UID) + H("04 00 11 22 33 44 55 66 77 88")
    port = ScriptedTransport().expect(INVENTORY, reply(body))
    assert [tag.uid for tag in make_reader(port).inventory()] == [UID]


def test_inventory_data_in_another_layout_is_a_clear_error() -> None:
    port = ScriptedTransport().expect(INVENTORY, reply(H("00 01 06 00 11 22 33 44 55 66 77 88 99 AA BB")))
    reader = make_reader(port)
    with pytest.raises(ReaderProtocolError, match="only ISO 15693 transponders"):
        reader.inventory()
    assert reader.state == "fault"


def test_advanced_frames_and_a_bus_address() -> None:
    port = (ScriptedTransport()
            .expect(H("02 00 09 FF B0 01 00 18 43"), NO_TAG)
            .expect(H("07 03 B0 01 00 03 B6"), reply(H("01"), com_adr=0x03)))
    assert make_reader(port, advanced_frames=True).inventory() == []
    assert make_reader(port, bus_address=3).inventory() == []
    port.assert_done()


def test_a_reply_from_another_bus_address_is_not_ours() -> None:
    port = ScriptedTransport()
    for _ in range(3):
        port.expect(H("07 03 B0 01 00 03 B6"), NO_TAG)  # address 0 answers
    with pytest.raises(ReaderProtocolError, match="junk"):
        make_reader(port, bus_address=3).inventory()
    port.assert_done()


# --- reading blocks, system information, AFI -----------------------------------------------

def test_read_multiple_blocks_in_pieces_and_in_memory_order() -> None:
    port = ScriptedTransport().expect(READ_0_2, TWO_BLOCKS).expect(READ_2_1, ONE_BLOCK)
    reader = make_reader(port, max_blocks_per_read=2)
    assert reader.read_blocks(UID, 0, 3) == H("11 22 33 44 55 66 77 88 99 AA BB CC")
    port.assert_done()


def test_block_bytes_as_sent_when_the_reader_sends_memory_order() -> None:
    port = ScriptedTransport().expect(READ_0_2, TWO_BLOCKS)
    reader = make_reader(port, block_byte_order="memory")
    assert reader.read_blocks(UID.lower(), 0, 2) == H("44 33 22 11 88 77 66 55")


def test_a_read_reply_with_the_wrong_number_of_blocks_is_refused() -> None:
    port = ScriptedTransport().expect(READ_0_2, ONE_BLOCK)
    with pytest.raises(ReaderProtocolError, match="Read Multiple Blocks"):
        make_reader(port).read_blocks(UID, 0, 2)


def test_get_system_information() -> None:
    port = ScriptedTransport().expect(SYSTEM_INFO, INFO_07)
    reader = make_reader(port)
    assert reader.system_info(UID) == TagInfo(uid=UID, dsfid=0x00, afi=0x07, block_size=4,
                                              block_count=28, ic_ref=0x01)
    port.assert_done()


def test_write_afi_then_read_it_back() -> None:
    port = ScriptedTransport().expect(WRITE_AFI_C2, OK).expect(SYSTEM_INFO, INFO_C2)
    make_reader(port).write_afi(UID, 0xC2)
    port.assert_done()


def test_write_afi_again_when_it_did_not_stick() -> None:
    port = (ScriptedTransport()
            .expect(WRITE_AFI_C2, OK).expect(SYSTEM_INFO, INFO_07)
            .expect(WRITE_AFI_C2, OK).expect(SYSTEM_INFO, INFO_C2))
    make_reader(port).write_afi(UID, 0xC2)
    port.assert_done()


def test_write_afi_that_never_sticks_is_a_clear_error() -> None:
    port = ScriptedTransport()
    for _ in range(3):
        port.expect(WRITE_AFI_C2, OK).expect(SYSTEM_INFO, INFO_07)
    with pytest.raises(AfiNotConfirmed, match=r"AFI 0xC2 did not stick .* read back 0x07") as caught:
        make_reader(port).write_afi(UID, 0xC2)
    assert (caught.value.last_read, caught.value.attempts) == (0x07, 3)
    port.assert_done()


def test_write_afi_on_a_tag_that_left() -> None:
    gone = reply(H("01"))
    port = ScriptedTransport()
    for _ in range(2):
        port.expect(WRITE_AFI_C2, gone).expect(SYSTEM_INFO, gone)
    reader = make_reader(port, retries=0, afi_write_attempts=2)
    with pytest.raises(AfiNotConfirmed, match="could not be read back") as caught:
        reader.write_afi(UID, 0xC2)
    assert isinstance(caught.value.__cause__, TagNotFound)
    assert reader.state == "ok"
    port.assert_done()


# --- statuses, retries, broken replies --------------------------------------------------

def test_an_iso15693_error_names_the_tags_error() -> None:
    port = ScriptedTransport().expect(READ_0_2, reply(H("95 10")))
    with pytest.raises(TagError, match="ISO 15693 error 0x10: block not available") as caught:
        make_reader(port).read_blocks(UID, 0, 2)
    assert caught.value.iso_code == 0x10


def test_a_refused_command_is_a_status_error_and_the_reader_stays_ok() -> None:
    port = ScriptedTransport().expect(WRITE_AFI_C2, reply(H("82")))
    reader = make_reader(port)
    with pytest.raises(ReaderStatusError, match="0x82 command not available"):
        reader._write_afi_once(UID, 0xC2)
    assert reader.state == "ok"


def test_rf_errors_are_retried() -> None:
    port = (ScriptedTransport().expect(INVENTORY, RF_ERROR_CAPTURED)
            .expect(INVENTORY, reply(H("02"))).expect(INVENTORY, ONE_TAG_CAPTURED))
    assert len(make_reader(port).inventory()) == 1
    port.assert_done()


def test_rf_errors_that_persist() -> None:
    port = ScriptedTransport()
    for _ in range(3):
        port.expect(READ_0_2, reply(H("83")))
    reader = make_reader(port)
    with pytest.raises(TagCommunicationError, match="RF communication error"):
        reader.read_blocks(UID, 0, 2)
    assert reader.state == "ok"
    port.assert_done()


def test_an_addressed_tag_that_does_not_answer() -> None:
    port = ScriptedTransport()
    for _ in range(3):
        port.expect(SYSTEM_INFO, NO_TAG)
    with pytest.raises(TagNotFound, match=UID):
        make_reader(port).read_afi(UID)
    port.assert_done()


def test_a_crc_error_is_sent_again() -> None:
    corrupted = ONE_TAG_CAPTURED[:-1] + b"\x00"
    port = ScriptedTransport().expect(INVENTORY, corrupted).expect(INVENTORY, ONE_TAG_CAPTURED)
    assert len(make_reader(port).inventory()) == 1
    port.assert_done()


def test_junk_before_the_reply_costs_nothing() -> None:
    port = ScriptedTransport().expect(INVENTORY, b"\x00\xff\x13 line noise \r\n" + NO_TAG)
    assert make_reader(port).inventory() == []
    port.assert_done()


def test_stale_bytes_are_dropped_before_each_command() -> None:
    port = ScriptedTransport().expect(INVENTORY, NO_TAG + b"late").expect(INVENTORY, NO_TAG)
    reader = make_reader(port)
    reader.inventory()
    reader.inventory()
    assert bytes(port.discarded) == b"late"


def test_junk_and_cut_frames_only_are_a_clear_error() -> None:
    port = (ScriptedTransport().expect(INVENTORY, b"\x00\x13 junk")
            .expect(INVENTORY, ONE_TAG_CAPTURED[:9]).expect(INVENTORY, b"\xfe" * 600))
    reader = make_reader(port)
    with pytest.raises(ReaderProtocolError, match=r"no valid reply in 3 attempt\(s\): no reply "
                                                  r"frame in 513 bytes of junk"):
        reader.inventory()
    assert reader.state == "fault"
    port.assert_done()


def test_a_silent_reader_is_a_fault_until_it_answers() -> None:
    port = ScriptedTransport().expect(INVENTORY).expect(INVENTORY).expect(INVENTORY)
    reader = make_reader(port)
    with pytest.raises(ReaderNotResponding, match=r"did not answer 07 ff b0 01 00 1c 56 \(3 attempt"):
        reader.inventory()
    assert reader.state == "fault"
    port.expect(INVENTORY, NO_TAG)
    assert reader.inventory() == []
    assert reader.state == "ok"
    port.assert_done()


def test_bad_arguments_never_reach_the_wire() -> None:
    port = ScriptedTransport()
    reader = make_reader(port)
    with pytest.raises(ValueError, match="UID"):
        reader.read_blocks("E004", 0, 1)
    with pytest.raises(ValueError, match="outside"):
        reader.read_blocks(UID, 250, 10)
    with pytest.raises(ValueError, match="AFI"):
        reader.write_afi(UID, 0x100)
    port.assert_done()


# --- hot-plug ------------------------------------------------------------------------------

def test_unplugged_and_plugged_back_with_backoff() -> None:
    clock = Clock()
    port = ScriptedTransport().expect(INVENTORY, NO_TAG).unplug(failed_opens=1)
    reader = make_reader(port, clock)
    assert reader.inventory() == []

    with pytest.raises(ReaderUnavailable, match="unplugged"):
        reader.inventory()
    assert reader.state == "fault"
    with pytest.raises(ReaderUnavailable, match=r"not connected \(scripted\); next try in 0.5 s"):
        reader.inventory()
    assert port.opens == 1

    clock.now += 0.5
    assert reader.check() == "fault"   # still gone: the next try waits twice as long
    assert port.opens == 1
    clock.now += 0.9
    assert reader.check() == "fault"
    clock.now += 0.1
    assert reader.check() == "ok"
    assert port.opens == 2

    port.expect(INVENTORY, ONE_TAG_CAPTURED)
    assert len(reader.inventory()) == 1
    port.assert_done()


def test_unplugged_while_waiting_for_the_reply() -> None:
    port = ScriptedTransport().expect(WRITE_AFI_C2).unplug()
    reader = make_reader(port)
    with pytest.raises(ReaderUnavailable):
        reader.write_afi(UID, 0xC2)
    assert reader.state == "fault"
    port.assert_done()


def test_a_station_starts_without_its_reader() -> None:
    clock = Clock()
    port = ScriptedTransport().unplug(failed_opens=0)
    reader = FeigReader(FeigReaderConfig(port="scripted"), transport=port, clock=clock)
    assert reader.state == "absent"
    reader.open()                      # does not raise: the reader may come later
    assert reader.state == "fault"
    clock.now += 0.5
    assert reader.check() == "ok"
    reader.close()
    assert reader.state == "absent"
    with pytest.raises(ReaderUnavailable, match="not open"):
        reader.inventory()
    port.assert_done()
