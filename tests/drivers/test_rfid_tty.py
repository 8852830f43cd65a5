"""Real ttys: the drivers through pyserial on a pty pair, a fake firmware on the other end.

The firmware thread is the hardware edge: it reads what the driver wrote to the tty and
answers from a `SimulatedPad`, as a bridge's microcontroller (or a FEIG reader) would.
Unplugging closes the pty and removes the by-id style link; plugging back opens a new pty
under the same link, as udev does for a replugged USB reader.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.rfid.feig import FeigReader, FeigReaderConfig
from drivers.rfid.lineproto import LineReader, LineReaderConfig
from drivers.rfid.reader import ReaderUnavailable
from drivers.rfid.simulated import FeigEmulator, LineBridgeEmulator, SimulatedPad, SimulatedTag

UID = "E004015000000001"
UID2 = "E004015000000002"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeFirmware:
    """A thread on the master side of a pty, answering requests with an emulator."""

    def __init__(self, device: FeigEmulator | LineBridgeEmulator) -> None:
        self.device = device
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-firmware", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.02)
            if not ready:
                continue
            try:
                buffer += os.read(self.master, 4096)
            except OSError:
                return
            for request in self.device.take_requests(buffer):
                self.requests.append(request)
                os.write(self.master, self.device.respond(request))

    def unplug(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def pad() -> SimulatedPad:
    tag = SimulatedTag(uid=UID)
    tag.memory[:8] = bytes.fromhex("1101013130303031")
    return SimulatedPad([tag, SimulatedTag(uid=UID2, afi=0xC2)])


@pytest.fixture
def by_id(tmp_path: Path) -> Path:
    return tmp_path / "usb-thuvien_bridge-if00"


@pytest.fixture
def firmwares() -> Iterator[list[FakeFirmware]]:
    started: list[FakeFirmware] = []
    yield started
    for firmware in started:
        if not firmware._stop.is_set():
            firmware.unplug()


def test_line_protocol_end_to_end_and_hot_plug(pad: SimulatedPad, by_id: Path,
                                               firmwares: list[FakeFirmware]) -> None:
    firmwares.append(FakeFirmware(LineBridgeEmulator(pad)))
    by_id.symlink_to(firmwares[0].path)
    clock = Clock()
    reader = LineReader(LineReaderConfig(port=str(by_id), timeout=0.5, boot_timeout=1.0),
                        clock=clock)
    reader.open()
    try:
        assert (reader.state, reader.firmware) == ("ok", "thuvien simulated bridge")
        assert sorted(tag.uid for tag in reader.inventory()) == [UID, UID2]
        assert reader.read_blocks(UID, 0, 2) == bytes.fromhex("1101013130303031")
        reader.write_afi(UID, 0xC2)
        assert pad.tag(UID).afi == 0xC2
        assert firmwares[0].requests == [
            b"VERSION\n", b"INV\n", b"RD E004015000000001 0 2\n",
            b"WAFI E004015000000001 C2\n", b"SYS E004015000000001\n"]

        firmwares[0].unplug()
        by_id.unlink()
        with pytest.raises(ReaderUnavailable):
            reader.inventory()
        assert reader.state == "fault"

        firmwares.append(FakeFirmware(LineBridgeEmulator(pad, version="1 bridge after replug")))
        by_id.symlink_to(firmwares[1].path)
        assert reader.check() == "fault"  # not due yet: backoff
        clock.now += 1
        assert reader.check() == "ok"
        assert reader.firmware == "bridge after replug"
        assert sorted(tag.uid for tag in reader.inventory()) == [UID, UID2]
    finally:
        reader.close()


def test_a_bridge_that_stays_silent_is_a_fault_in_bounded_time(by_id: Path) -> None:
    master, slave = os.openpty()
    try:
        by_id.symlink_to(os.ttyname(slave))
        reader = LineReader(LineReaderConfig(port=str(by_id), timeout=0.1, boot_timeout=0.2,
                                             retries=1))
        started = time.monotonic()
        reader.open()
        assert reader.state == "fault"
        assert time.monotonic() - started < 2
        reader.close()
    finally:
        os.close(master)
        os.close(slave)


def test_a_missing_port_is_a_fault_not_a_crash(by_id: Path) -> None:
    reader = LineReader(LineReaderConfig(port=str(by_id)))
    reader.open()
    assert reader.state == "fault"
    with pytest.raises(ReaderUnavailable, match="not connected"):
        reader.inventory()
    reader.close()


def test_feig_reader_on_a_tty(pad: SimulatedPad, firmwares: list[FakeFirmware]) -> None:
    firmwares.append(FakeFirmware(FeigEmulator(pad)))
    reader = FeigReader(FeigReaderConfig(port=firmwares[0].path, timeout=0.5))
    reader.open()
    try:
        assert sorted(tag.uid for tag in reader.inventory()) == [UID, UID2]
        assert reader.read_blocks(UID, 0, 2) == bytes.fromhex("1101013130303031")
        reader.write_afi(UID2, 0x07)
        assert pad.tag(UID2).afi == 0x07
        assert firmwares[0].requests[0] == bytes.fromhex("07 FF B0 01 00 1C 56")
    finally:
        reader.close()
