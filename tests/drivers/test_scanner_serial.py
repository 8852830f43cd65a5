"""Serial barcode scanners: framing byte by byte, a scripted port, a real pty, hot-plug."""

from __future__ import annotations

import os
import time
import tty
from pathlib import Path

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers import create_scanner
from drivers.base import Read
from drivers.rfid.transport import TransportError
from drivers.serial_scanner import (
    FrameDecoder,
    ScannerSerialPort,
    ScriptedSerialPort,
    SerialScanner,
    SerialScannerConfig,
    Unplugged,
    parse_terminator,
)
from kiosk.config import StationConfig
from test_scanner_contract import PtyScanner, wait_for


def config(**extra: object) -> SerialScannerConfig:
    return SerialScannerConfig(**{"port": "/dev/serial/by-id/usb-test", "reconnect_initial": 0.01,
                                  "reconnect_max": 0.05, **extra})


# --- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("CR", b"\r"), ("lf", b"\n"), ("CRLF", b"\r\n"), ("TAB", b"\t"), ("ETX", b"\x03"),
    ("0x03", b"\x03"), ("0x0D0A", b"\r\n"), ("\r", b"\r"), ("\x03", b"\x03"), ("##", b"##"),
])
def test_terminators(text: str, expected: bytes) -> None:
    assert parse_terminator(text) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("", "1 to 4 bytes"), ("0xZZ", "not hexadecimal"), ("0x0102030405", "1 to 4 bytes"),
    ("Đ", "bytes, not"),
])
def test_bad_terminators(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_terminator(text)


def test_a_station_file_configures_a_serial_scanner() -> None:
    station = StationConfig.model_validate({"site": "s", "station": "k", "devices": {"scanner": {
        "type": "serial", "port": "/dev/serial/by-id/usb-Datalogic_QuickScan-if00",
        "baudrate": 115200, "parity": "even", "bytesize": 7, "terminator": "0x03", "prefix": "]E0"}}})
    scanner = create_scanner(station.devices.scanner)
    assert isinstance(scanner, SerialScanner)
    assert (scanner.decoder.terminator, scanner.decoder.prefix) == (b"\x03", b"]E0")
    assert scanner.port.description == "/dev/serial/by-id/usb-Datalogic_QuickScan-if00"


@pytest.mark.parametrize(("table", "words"), [
    ({"type": "serial"}, "port"),
    ({"type": "serial", "port": "/dev/ttyUSB0", "terminator": "0xZZ"}, "not hexadecimal"),
    ({"type": "serial", "port": "/dev/ttyUSB0", "encoding": "klingon"}, "unknown text encoding"),
    ({"type": "serial", "port": "/dev/ttyUSB0", "parity": "sometimes"}, "parity"),
    ({"type": "serial", "port": "/dev/ttyUSB0", "reconnect_initial": 5, "reconnect_max": 1},
     "reconnect_max must not be less"),
    ({"type": "serial", "port": "/dev/ttyUSB0", "baud": 9600}, "Extra inputs"),
])
def test_bad_serial_configs_are_refused_with_the_reason(table: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        StationConfig.model_validate({"site": "s", "station": "k", "devices": {"scanner": table}})


# --- framing -------------------------------------------------------------------------------

def test_exact_bytes_become_codes() -> None:
    decoder = FrameDecoder(terminator=b"\r")
    assert decoder.feed(b"TN00315\r9786040000000\r") == ["TN00315", "9786040000000"]
    assert decoder.feed(b"HS-2026-") == []
    assert decoder.feed(b"0008\r") == ["HS-2026-0008"]


@pytest.mark.parametrize("terminator", [b"\r", b"\r\n", b"\x03"])
def test_a_code_split_at_every_byte_still_reads_once(terminator: bytes) -> None:
    stream = b"TN00315" + terminator + b"TK.00131" + terminator
    for cut in range(1, len(stream)):
        decoder = FrameDecoder(terminator=terminator)
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == ["TN00315", "TK.00131"], cut


@given(codes=st.lists(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                              max_size=40), max_size=6),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_chunking_reads_the_same_codes(codes: list[str], cuts: list[int]) -> None:
    stream = b"".join(code.encode() + b"\r\n" for code in codes)
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    decoder = FrameDecoder(terminator=b"\r\n", max_length=40)
    read = [code for a, b in zip(points, points[1:]) for code in decoder.feed(stream[a:b])]
    assert read == codes and decoder.rejected == 0


def test_prefix_and_suffix_are_removed_where_present() -> None:
    decoder = FrameDecoder(terminator=b"\r", prefix=b"]E0", suffix=b"#")
    assert decoder.feed(b"]E09786040000000#\r]E0TN00315\rTK00131#\r") == [
        "9786040000000", "TN00315", "TK00131"]


def test_control_characters_are_dropped_and_text_is_decoded() -> None:
    decoder = FrameDecoder(terminator=b"\r\n")
    assert decoder.feed(b"\x02TN00315\x03\r\n\r\n \t\r\n") == ["TN00315"]
    assert decoder.feed("Sách-01\r\n".encode()) == ["Sách-01"]
    latin = FrameDecoder(terminator=b"\r", encoding="latin-1")
    assert latin.feed(b"caf\xe9\r") == ["café"]


def test_undecodable_frames_are_dropped_not_guessed() -> None:
    decoder = FrameDecoder(terminator=b"\r")
    assert decoder.feed(b"TN0\xff0315\r\xc3(\rTN00316\r") == ["TN00316"]
    assert decoder.rejected == 2


def test_junk_without_a_terminator_is_discarded_up_to_the_next_one() -> None:
    decoder = FrameDecoder(terminator=b"\r\n", max_length=16)
    assert decoder.feed(b"\x00" * 10 + b"#" * 10) == []   # over 16 bytes: junk
    assert decoder.feed(b"#" * 1000 + b"TN00315") == []  # still the same junk
    assert decoder.rejected == 1
    assert decoder.feed(b"\r") == []
    assert decoder.feed(b"\nTN00316\r\n") == ["TN00316"]  # a terminator split across reads
    assert decoder.feed(b"A" * 17 + b"\r\n" + b"A" * 16 + b"\r\n") == ["A" * 16]
    assert decoder.rejected == 2


def test_reset_forgets_a_partial_code() -> None:
    decoder = FrameDecoder(terminator=b"\r")
    decoder.feed(b"TN00")
    decoder.reset()
    assert decoder.feed(b"TK00131\r") == ["TK00131"]


# --- the scanner on a scripted port ------------------------------------------------------

def run(scanner: SerialScanner) -> list[Read]:
    reads: list[Read] = []
    scanner.start(reads.append)
    return reads


def test_reads_arrive_in_order_however_the_bytes_were_split() -> None:
    port = ScriptedSerialPort(b"]E0TN0", b"0315\r", b"]E0978604", b"0000000\r]E0TK00131\r")
    scanner = SerialScanner(config(prefix="]E0"), port)
    reads = run(scanner)
    try:
        wait_for(lambda: len(reads) == 3, "three reads")
        assert [r.code for r in reads] == ["TN00315", "9786040000000", "TK00131"]
        assert {r.source for r in reads} == {"barcode"} and scanner.state == "ok"
    finally:
        scanner.stop()


def test_a_scanner_not_plugged_in_at_start_faults_then_works_when_it_appears() -> None:
    port = ScriptedSerialPort(Unplugged(failed_opens=3), b"TN00315\r")
    scanner = SerialScanner(config(), port)
    reads = run(scanner)
    try:
        assert scanner.state == "fault"  # known when start() returns
        assert "unplugged" in scanner.last_error
        wait_for(lambda: scanner.state == "ok", "the scanner to appear")
        wait_for(lambda: len(reads) == 1, "the read")
        assert port.failed_opens == 4 and port.opens == 1 and scanner.last_error == ""
    finally:
        scanner.stop()


def test_reopening_backs_off_doubling_up_to_the_max() -> None:
    attempts: list[float] = []

    class Timed(ScriptedSerialPort):
        def open(self) -> None:
            attempts.append(time.monotonic())
            super().open()

    port = Timed(Unplugged(failed_opens=6))
    scanner = SerialScanner(config(reconnect_initial=0.02, reconnect_max=0.08), port)
    run(scanner)
    try:
        wait_for(lambda: scanner.state == "ok", "the recovery")
    finally:
        scanner.stop()
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert len(gaps) == 7
    # Waits are at least the backoff (they may be longer on a busy machine).
    for gap, least in zip(gaps, [0.02, 0.04, 0.08, 0.08, 0.08, 0.08, 0.08]):
        assert gap >= least * 0.9, gaps


def test_a_code_cut_by_an_unplug_is_not_glued_to_the_next() -> None:
    port = ScriptedSerialPort(b"TN00", Unplugged(failed_opens=1), b"TK00131\r")
    scanner = SerialScanner(config(), port)
    reads = run(scanner)
    try:
        wait_for(lambda: len(reads) == 1, "the read after the replug")
        assert reads[0].code == "TK00131"
    finally:
        scanner.stop()


def test_a_failing_station_callback_does_not_deafen_the_scanner() -> None:
    port = ScriptedSerialPort(b"BAD\rTN00315\r")
    scanner = SerialScanner(config(), port)
    seen: list[str] = []

    def on_read(read: Read) -> None:
        seen.append(read.code)
        if read.code == "BAD":
            raise RuntimeError("a bug in the station")

    scanner.start(on_read)
    try:
        wait_for(lambda: seen == ["BAD", "TN00315"], "both reads")
        assert scanner.state == "ok"
    finally:
        scanner.stop()


def test_stop_ends_the_thread_and_releases_the_port() -> None:
    port = ScriptedSerialPort()
    scanner = SerialScanner(config(), port)
    run(scanner)
    thread = scanner._thread
    assert thread is not None and port.is_open
    scanner.stop()
    assert not thread.is_alive() and not port.is_open and scanner.state == "absent"
    run(scanner)  # and it can start again
    assert scanner.state == "ok"
    scanner.stop()


# --- a real serial port ------------------------------------------------------------------

def test_the_port_applies_the_framing_and_reads_what_arrived() -> None:
    port = ScannerSerialPort("loop://", baudrate=9600, parity=serial.PARITY_EVEN, bytesize=7,
                             stopbits=2)
    port.open()
    try:
        wire = port._port_or_raise()
        assert (wire.bytesize, wire.parity, wire.stopbits) == (7, "E", 2)
        wire.write(b"TN00315\r")
        assert port.read_available(1.0) == b"TN00315\r"
        started = time.monotonic()
        assert port.read_available(0.1) == b""
        assert time.monotonic() - started < 1.0
    finally:
        port.close()


def test_a_missing_port_is_a_clear_transport_error(tmp_path: Path) -> None:
    port = ScannerSerialPort(str(tmp_path / "usb-Missing-if00"), baudrate=9600)
    with pytest.raises(TransportError, match="usb-Missing-if00"):
        port.open()


def test_a_pty_scanner_unplugged_and_replugged_at_the_same_path(tmp_path: Path) -> None:
    device = PtyScanner(tmp_path / "usb-Zebra_DS2208-if00")
    scanner = SerialScanner(SerialScannerConfig(port=str(device.link), terminator="CRLF",
                                                reconnect_initial=0.01, reconnect_max=0.05))
    reads = run(scanner)
    try:
        assert scanner.state == "ok"
        device.write(b"TN00315\r")
        device.write(b"\n9786040000000\r\n")
        wait_for(lambda: len(reads) == 2, "two reads")
        device.unplug()
        wait_for(lambda: scanner.state == "fault", "the fault")
        assert scanner.last_error
        device.plug()
        wait_for(lambda: scanner.state == "ok", "the recovery")
        device.write(b"TK00131\r\n")
        wait_for(lambda: len(reads) == 3, "the read after the replug")
        assert [r.code for r in reads] == ["TN00315", "9786040000000", "TK00131"]
    finally:
        scanner.stop()
        device.unplug()


def test_a_pty_scanner_that_appears_after_start(tmp_path: Path) -> None:
    link = tmp_path / "usb-Newland-if00"
    scanner = SerialScanner(SerialScannerConfig(port=str(link), reconnect_initial=0.01,
                                                reconnect_max=0.05))
    reads = run(scanner)
    device = None
    try:
        assert scanner.state == "fault" and "usb-Newland-if00" in scanner.last_error
        device = PtyScanner(link)
        wait_for(lambda: scanner.state == "ok", "the scanner to appear")
        device.write(b"TN00315\r")
        wait_for(lambda: len(reads) == 1, "the read")
    finally:
        scanner.stop()
        if device is not None:
            device.unplug()


def test_a_port_held_by_another_program_is_a_fault_not_a_crash(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "usb-Held-if00"
    link.symlink_to(os.ttyname(slave))
    holder = serial.Serial(str(link), exclusive=True)
    scanner = SerialScanner(SerialScannerConfig(port=str(link), reconnect_initial=0.01,
                                                reconnect_max=0.05))
    try:
        run(scanner)
        assert scanner.state == "fault" and scanner.last_error
        holder.close()
        wait_for(lambda: scanner.state == "ok", "the port to be free")
    finally:
        scanner.stop()
        holder.close()
        os.close(master)
        os.close(slave)
