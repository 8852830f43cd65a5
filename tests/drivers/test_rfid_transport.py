"""The byte transports: pyserial on a real tty pair and on loop://, and the scripted one."""

from __future__ import annotations

import os
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.rfid.transport import ScriptedTransport, SerialTransport, TransportError


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def test_serial_reads_wait_until_their_timeout_and_no_longer(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    port = SerialTransport(path, baudrate=115200)
    port.open()
    try:
        os.write(master, b"\x06\x00\xb0")
        started = time.monotonic()
        assert port.read(6, timeout=0.3) == b"\x06\x00\xb0"  # three bytes short: the time ran out
        assert 0.25 <= time.monotonic() - started < 1.5
        os.write(master, b"END 0\nTAG")
        assert port.read_line(timeout=0.3, max_size=300) == b"END 0\n"
        assert port.read_line(timeout=0.2, max_size=300) == b"TAG"
        os.write(master, b"X" * 20 + b"\n")
        assert port.read_line(timeout=0.3, max_size=8) == b"X" * 8
        port.discard_input()
        os.write(master, b"OK\n")
        assert port.read_line(timeout=0.3, max_size=300) == b"OK\n"
        port.write(b"INV\n")
        assert os.read(master, 100) == b"INV\n"
    finally:
        port.close()


def test_a_vanished_tty_is_a_transport_error(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    port = SerialTransport(path, baudrate=38400, parity="E")
    port.open()
    os.close(master)
    with pytest.raises(TransportError, match="read failed"):
        port.read(1, timeout=0.5)
    with pytest.raises(TransportError):
        port.discard_input()
    port.close()
    port.close()
    assert not port.is_open


def test_a_missing_device_is_a_transport_error(tmp_path: Path) -> None:
    port = SerialTransport(str(tmp_path / "usb-FEIG_ID_ISC-if00"), baudrate=38400)
    with pytest.raises(TransportError, match="cannot open"):
        port.open()
    with pytest.raises(TransportError, match="not open"):
        port.write(b"x")


def test_pyserial_urls_work_too() -> None:
    port = SerialTransport("loop://", baudrate=115200)
    port.open()
    port.open()  # already open: nothing happens
    port.write(b"PING 1\n")
    assert port.read_line(timeout=0.2, max_size=300) == b"PING 1\n"
    port.close()


# --- the scripted transport ----------------------------------------------------------------

def test_scripted_replies_come_after_the_whole_expected_write() -> None:
    port = ScriptedTransport().expect(b"INV\n", b"END 0\n")
    port.open()
    port.write(b"IN")
    assert port.read(10, timeout=1) == b""  # nothing yet, and no waiting
    port.write(b"V\n")
    assert port.read_line(timeout=1, max_size=100) == b"END 0\n"
    port.assert_done()


def test_an_unexpected_write_fails_the_test_even_if_swallowed() -> None:
    port = ScriptedTransport().expect(b"INV\n", b"END 0\n")
    port.open()
    with pytest.raises(AssertionError, match=r"got 52 44, expected 49 4e 56 0a"):
        port.write(b"RD")
    with pytest.raises(AssertionError, match="got 52 44"):
        port.assert_done()


def test_a_write_beyond_the_script_fails() -> None:
    port = ScriptedTransport()
    port.open()
    with pytest.raises(AssertionError, match="nothing more is scripted"):
        port.write(b"\x07")


def test_steps_that_never_happened_fail_the_test() -> None:
    port = ScriptedTransport().expect(b"A", b"1").expect(b"B", b"2")
    port.open()
    port.write(b"A")
    with pytest.raises(AssertionError, match="1 scripted step"):
        port.assert_done()


def test_scripted_unplug_and_replug() -> None:
    port = ScriptedTransport().expect(b"A").unplug(failed_opens=2).expect(b"B")
    port.open()
    port.write(b"A")
    with pytest.raises(TransportError, match="vanished"):
        port.read(1, timeout=1)
    assert not port.is_open
    for _ in range(2):
        with pytest.raises(TransportError, match="unplugged"):
            port.open()
    port.open()
    port.write(b"B")
    assert port.opens == 2
    port.assert_done()


def test_using_a_closed_scripted_port_is_a_test_failure() -> None:
    port = ScriptedTransport().expect(b"A")
    with pytest.raises(AssertionError, match="while closed"):
        port.write(b"A")
