"""The contract every scanner driver keeps, run on each driver at its hardware edge.

Each driver is a rig: the scanner, plus the edge that makes its device produce a code,
produce junk, vanish and come back. To add a driver (the camera, NFC cards), write one
rig function below, decorated with `@rig("name")` (`hotplug=False` / `junk=False` when
the device cannot do that), and every test here runs on it.
"""

from __future__ import annotations

import fcntl
import io
import os
import queue
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from evdev import InputEvent, ecodes

from drivers.base import DeviceUnavailable, MultiScanner, Read, Scanner, SimulatedScanner, StdinScanner
from drivers.evdev_scanner import US_LAYOUT, EvdevScanner, EvdevScannerConfig
from drivers.serial_scanner import ScriptedSerialPort, SerialScanner, SerialScannerConfig

CODES = ["TN00315", "9786040000000", "HS-2026-0008"]
TIMEOUT = 5.0


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@dataclass
class Rig:
    scanner: Scanner
    present: Callable[[str], None]                 # the device reads this code
    junk: Callable[[], None] | None = None         # the device produces garbage
    unplug: Callable[[], None] | None = None       # the device vanishes
    replug: Callable[[], None] | None = None       # ...and comes back
    cleanup: list[Callable[[], None]] = field(default_factory=list)


RigFactory = Callable[[Path], Rig]
RIGS: dict[str, RigFactory] = {}
HOTPLUG: list[str] = []
JUNK: list[str] = []


def rig(name: str, *, hotplug: bool = True, junk: bool = True) -> Callable[[RigFactory], RigFactory]:
    def add(factory: RigFactory) -> RigFactory:
        RIGS[name] = factory
        if hotplug:
            HOTPLUG.append(name)
        if junk:
            JUNK.append(name)
        return factory
    return add


# --- the rigs ----------------------------------------------------------------------------

def _pipe_drained(fd: int) -> bool:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little") == 0


@rig("stdin", hotplug=False)  # a terminal cannot be replugged: its end is EOF (tested apart)
def stdin_rig(tmp_path: Path) -> Rig:
    read_end, write_end = os.pipe()
    stream = io.TextIOWrapper(open(read_end, "rb", buffering=0), encoding="utf-8")

    def junk() -> None:
        os.write(write_end, b"\xff\xfe\xc3(\x00\n")   # not UTF-8
        wait_for(lambda: _pipe_drained(read_end), "the junk to be read")
        os.write(write_end, b"\x00\x07\x1b\x7f\t\r\n")  # control characters only

    return Rig(StdinScanner(stream), lambda code: os.write(write_end, code.encode() + b"\n"),
               junk=junk, cleanup=[lambda: os.close(write_end)])


@rig("simulated", junk=False)  # the twin decodes nothing, so nothing can be junk
def simulated_rig(tmp_path: Path) -> Rig:
    scanner = SimulatedScanner()
    return Rig(scanner, lambda code: scanner.feed(code),
               unplug=lambda: scanner.set_state("fault"), replug=lambda: scanner.set_state("ok"))


SERIAL_JUNK = [b"\x00\xff\xfe\x80\r", b"#" * 300, b"##\r", b"\x02\x03\x1b\r"]


def _fast(**extra: Any) -> SerialScannerConfig:
    return SerialScannerConfig(port="/dev/serial/by-id/usb-test-scanner", reconnect_initial=0.01,
                               reconnect_max=0.05, **extra)


@rig("serial-scripted")
def serial_scripted_rig(tmp_path: Path) -> Rig:
    port = ScriptedSerialPort()
    return Rig(SerialScanner(_fast(), port), lambda code: port.send(code.encode() + b"\r"),
               junk=lambda: port.send(*SERIAL_JUNK), unplug=port.unplug, replug=port.plug)


class PtyScanner:
    """A real tty whose other end is the scanner, behind a by-id style link."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = self.slave = -1
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        fresh = self.link.with_suffix(".new")
        fresh.symlink_to(os.ttyname(self.slave))
        fresh.replace(self.link)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)
        self.master = self.slave = -1

    def write(self, data: bytes) -> None:
        os.write(self.master, data)


@rig("serial-pty")
def serial_pty_rig(tmp_path: Path) -> Rig:
    device = PtyScanner(tmp_path / "usb-Honeywell_Scanner-if00")
    scanner = SerialScanner(SerialScannerConfig(port=str(device.link), baudrate=115200,
                                                reconnect_initial=0.01, reconnect_max=0.05))

    def junk() -> None:
        for chunk in SERIAL_JUNK:
            device.write(chunk)

    return Rig(scanner, lambda code: device.write(code.encode() + b"\r"), junk=junk,
               unplug=device.unplug, replug=device.plug,
               cleanup=[lambda: device.master >= 0 and device.unplug()])


# Character -> the key that types it on a US keyboard, and whether Shift is held.
US_KEYS = {chars[i]: (name, i == 1) for name, chars in reversed(US_LAYOUT.items()) for i in (0, 1)}


def key_events(text: str, *, enter: bool = True) -> list[InputEvent]:
    """What a keyboard-mode scanner sends for `text`: scan codes, presses, releases, syncs."""
    events: list[InputEvent] = []

    def key(name: str, value: int) -> None:
        code = ecodes.ecodes[name]
        events.append(InputEvent(0, 0, ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 + code))
        events.append(InputEvent(0, 0, ecodes.EV_KEY, code, value))
        events.append(InputEvent(0, 0, ecodes.EV_SYN, ecodes.SYN_REPORT, 0))

    for char in text:
        name, shifted = US_KEYS[char]
        if shifted:
            key("KEY_LEFTSHIFT", 1)
        key(name, 1)
        key(name, 0)
        if shifted:
            key("KEY_LEFTSHIFT", 0)
    if enter:
        key("KEY_ENTER", 1)
        key("KEY_ENTER", 0)
    return events


def junk_events() -> list[InputEvent]:
    """Keys that type nothing, events that are not keys, an auto-repeat, an empty Enter."""
    ev = InputEvent
    return [ev(0, 0, ecodes.EV_KEY, ecodes.KEY_F1, 1), ev(0, 0, ecodes.EV_KEY, ecodes.KEY_F1, 0),
            ev(0, 0, ecodes.EV_KEY, ecodes.KEY_LEFTCTRL, 1), ev(0, 0, ecodes.EV_KEY, ecodes.KEY_ESC, 1),
            ev(0, 0, ecodes.EV_KEY, ecodes.KEY_LEFTCTRL, 0), ev(0, 0, ecodes.EV_KEY, 0x2FF, 1),
            ev(0, 0, ecodes.EV_KEY, ecodes.KEY_A, 2), ev(0, 0, ecodes.EV_REL, ecodes.REL_X, 5),
            ev(0, 0, ecodes.EV_LED, ecodes.LED_NUML, 1), ev(0, 0, ecodes.EV_KEY, ecodes.KEY_ENTER, 1)]


class FakeInputDevice:
    """An opened input device at the hardware edge: events queued by the test."""

    description = "/dev/input/by-id/usb-Test_Scanner-event-kbd (fake)"

    def __init__(self) -> None:
        self.events: queue.Queue[InputEvent | OSError] = queue.Queue()
        self.closed = False

    def send(self, events: list[InputEvent]) -> None:
        for event in events:
            self.events.put(event)

    def vanish(self) -> None:
        self.events.put(OSError(19, "No such device"))

    def read_events(self, timeout: float) -> list[InputEvent]:
        # The kernel hands over what came before a vanish; the read after that fails.
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return []
        batch: list[InputEvent] = []
        while not isinstance(item, OSError):
            batch.append(item)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return batch
        if batch:
            self.events.put(item)  # nothing else is queued behind a vanish
            return batch
        raise item

    def close(self) -> None:
        self.closed = True


class FakeInputBus:
    """Opens the scanner while it is plugged in, as `open_evdev` would."""

    def __init__(self) -> None:
        self.plugged = True
        self.device: FakeInputDevice | None = None
        self.opens = 0

    def open(self, config: EvdevScannerConfig) -> FakeInputDevice:
        if not self.plugged:
            raise DeviceUnavailable(f"no input device with a USB id {config.usb_id}")
        self.device = FakeInputDevice()
        self.opens += 1
        return self.device

    def unplug(self) -> None:
        self.plugged = False
        assert self.device is not None
        self.device.vanish()

    def send(self, events: list[InputEvent]) -> None:
        assert self.device is not None
        self.device.send(events)


@rig("evdev")
def evdev_rig(tmp_path: Path) -> Rig:
    bus = FakeInputBus()
    config = EvdevScannerConfig(usb_id="0c2e:0b61", reconnect_initial=0.01, reconnect_max=0.05)
    scanner = EvdevScanner(config, opener=bus.open)
    return Rig(scanner, lambda code: bus.send(key_events(code)), junk=lambda: bus.send(junk_events()),
               unplug=bus.unplug, replug=lambda: setattr(bus, "plugged", True))


@rig("multi")
def multi_rig(tmp_path: Path) -> Rig:
    """A kiosk's scanner and card reader as one: the contract holds for the merge."""
    keyboard = SimulatedScanner(name="scanner")
    port = ScriptedSerialPort()
    card = SerialScanner(_fast(name="card"), port)
    return Rig(MultiScanner([keyboard, card]), lambda code: port.send(code.encode() + b"\r"),
               junk=lambda: port.send(*SERIAL_JUNK), unplug=port.unplug, replug=port.plug)


@rig("camera")
def camera_rig(tmp_path: Path) -> Rig:
    import numpy as np

    import camera_images
    from drivers.camera import CameraScanner, CameraScannerConfig

    camera = camera_images.ScriptedCamera()
    config = CameraScannerConfig(symbologies=("CODE128", "EAN13"), max_decodes_per_second=240,
                                 reconnect_initial=0.01, reconnect_max=0.05)
    scanner = CameraScanner(config, frame_source=camera, clock=camera.clock)

    def present(code: str) -> None:
        # Drawn as Code 128: the contract's codes are not all valid EAN-13s.
        camera.play(camera_images.noisy(camera_images.scene(
            camera_images.Placement(camera_images.barcode("code128", code))), 4.0))

    def junk() -> None:
        rng = np.random.default_rng(5)
        camera.play(rng.integers(0, 256, (480, 640), dtype=np.uint8), camera_images.empty(),
                    np.zeros((480, 640), np.float32), b"\xff\x00" * 64)

    return Rig(scanner, present, junk=junk, unplug=camera.unplug, replug=camera.plug)


# --- the contract --------------------------------------------------------------------------

class Started:
    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.reads: list[Read] = []
        self.ended = 0

    def start(self) -> None:
        self.rig.scanner.start(self.reads.append, self._ended)
        wait_for(lambda: self.rig.scanner.state == "ok", "the scanner to be ok")

    def _ended(self) -> None:
        self.ended += 1

    def codes(self) -> list[str]:
        return [read.code for read in self.reads]

    def expect(self, codes: list[str]) -> None:
        wait_for(lambda: len(self.reads) >= len(codes), f"reads {codes}")
        assert self.codes() == codes


@pytest.fixture(params=list(RIGS))
def any_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    yield from _made(RIGS[request.param], tmp_path)


@pytest.fixture(params=HOTPLUG)
def hotplug_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    yield from _made(RIGS[request.param], tmp_path)


@pytest.fixture(params=JUNK)
def junk_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    yield from _made(RIGS[request.param], tmp_path)


def _made(factory: RigFactory, tmp_path: Path) -> Iterator[Rig]:
    made = factory(tmp_path)
    try:
        yield made
    finally:
        made.scanner.stop()
        for step in made.cleanup:
            step()


def test_a_scanner_is_absent_until_started_and_stopping_it_first_is_harmless(any_rig: Rig) -> None:
    assert any_rig.scanner.state == "absent"
    any_rig.scanner.stop()
    assert any_rig.scanner.state == "absent"
    assert isinstance(any_rig.scanner.name, str) and any_rig.scanner.name


def test_start_read_stop(any_rig: Rig) -> None:
    run = Started(any_rig)
    run.start()
    for code in CODES:
        any_rig.present(code)
    run.expect(CODES)
    assert all(read.source and read.at > 0 for read in run.reads)
    any_rig.scanner.stop()
    assert any_rig.scanner.state == "absent"
    any_rig.scanner.stop()  # twice is fine
    assert any_rig.scanner.state == "absent"
    assert run.ended == 0  # stopping is not the input ending


def test_junk_is_never_a_read_and_the_next_code_is(junk_rig: Rig) -> None:
    run = Started(junk_rig)
    run.start()
    assert junk_rig.junk is not None
    junk_rig.junk()
    junk_rig.present("TN00315")
    run.expect(["TN00315"])
    assert junk_rig.scanner.state == "ok"


def test_unplug_faults_and_replug_recovers_without_a_restart(hotplug_rig: Rig) -> None:
    scanner = hotplug_rig.scanner
    assert hotplug_rig.unplug is not None and hotplug_rig.replug is not None
    run = Started(hotplug_rig)
    run.start()
    hotplug_rig.present("TN00001")
    run.expect(["TN00001"])

    hotplug_rig.unplug()
    wait_for(lambda: scanner.state == "fault", "the fault")
    assert scanner.last_error, "a fault says why"
    time.sleep(0.1)  # several reconnect attempts while it is away
    assert scanner.state == "fault"

    hotplug_rig.replug()
    wait_for(lambda: scanner.state == "ok", "the recovery")
    assert not scanner.last_error
    hotplug_rig.present("TN00002")
    run.expect(["TN00001", "TN00002"])
    assert run.ended == 0  # a hardware fault is not the end of the input


def test_a_station_sees_the_fault_and_the_recovery_through_check(hotplug_rig: Rig) -> None:
    """What the device watch does once a second: `check()` where there is one, else `state`."""
    scanner = hotplug_rig.scanner
    assert hotplug_rig.unplug is not None and hotplug_rig.replug is not None

    def polled() -> str:
        check = getattr(scanner, "check", None)
        return check() if callable(check) else scanner.state

    Started(hotplug_rig).start()
    assert polled() == "ok"
    hotplug_rig.unplug()
    wait_for(lambda: polled() == "fault", "check() to report the fault")
    hotplug_rig.replug()
    wait_for(lambda: polled() == "ok", "check() to report the recovery")


# --- the merge -----------------------------------------------------------------------------

def test_a_multiscanner_reads_from_every_part_and_reports_each() -> None:
    keyboard, card = SimulatedScanner(name="scanner"), SimulatedScanner(name="card")
    merged = MultiScanner([keyboard, card])
    reads: list[Read] = []
    merged.start(reads.append)
    keyboard.feed("TN00315")
    card.feed("04A2B3C4D5E6F7", source="card")
    assert [(r.code, r.source) for r in reads] == [("TN00315", "barcode"), ("04A2B3C4D5E6F7", "card")]
    assert [part.name for part in merged.parts] == ["scanner", "card"]

    card.set_state("fault")
    assert (merged.state, merged.last_error) == ("fault", "card: simulated fault")
    assert merged.check() == "fault"
    card.set_state("ok")
    assert (merged.state, merged.last_error) == ("ok", "")
    merged.stop()
    assert merged.state == "absent" and not keyboard.feed("TN00316")


def test_a_multiscanner_works_while_one_part_is_absent_and_ends_when_all_have() -> None:
    keyboard, card = SimulatedScanner(name="scanner"), SimulatedScanner(name="card")
    merged = MultiScanner([keyboard, card])
    ended: list[bool] = []
    merged.start(lambda read: None, lambda: ended.append(True))
    keyboard.end()  # stdin at EOF: the card reader still serves
    assert (keyboard.state, merged.state, ended) == ("absent", "ok", [])
    card.end()
    assert (merged.state, ended) == ("absent", [True])


def test_a_multiscanner_needs_distinct_names() -> None:
    with pytest.raises(ValueError, match="distinct names"):
        MultiScanner([SimulatedScanner(), SimulatedScanner()])
    with pytest.raises(ValueError, match="at least one"):
        MultiScanner([])


def test_a_part_that_cannot_start_stops_the_others() -> None:
    first, second = SimulatedScanner(name="a"), StdinScanner(io.StringIO(""), name="b")
    second.start(lambda read: None)  # already started: a second start raises
    merged = MultiScanner([first, second])
    with pytest.raises(RuntimeError, match="already started"):
        merged.start(lambda read: None)
    assert first.state == "absent"


def test_stdin_ends_with_its_stream_and_says_so_once() -> None:
    scanner = StdinScanner(io.StringIO("TN00315\n"))
    reads: list[Read] = []
    ended: list[bool] = []
    scanner.start(reads.append, lambda: ended.append(True))
    wait_for(lambda: ended == [True], "the end of the input")
    assert [r.code for r in reads] == ["TN00315"] and scanner.state == "absent"


class RecordingSink:
    def __init__(self) -> None:
        self.devices: dict[str, str] = {}
        self.events: list[tuple[str, str, str]] = []

    def set_device(self, name: str, state: str) -> None:
        self.devices[name] = state

    def publish_event(self, type_: str, data: Any) -> bool:
        self.events.append((type_, data.device, data.detail or ""))
        return True


def test_the_device_watch_reports_each_part_of_a_merge_by_name() -> None:
    from kiosk.devices import DeviceWatch

    keyboard = SimulatedScanner(name="scanner")
    port = ScriptedSerialPort()
    card = SerialScanner(_fast(name="card"), port)
    merged = MultiScanner([keyboard, card])
    merged.start(lambda read: None)
    sink = RecordingSink()
    watch = DeviceWatch(merged.parts, sink)
    try:
        assert watch.poll() == {"scanner": "ok", "card": "ok"}
        port.unplug()
        wait_for(lambda: card.state == "fault", "the card reader's fault")
        assert watch.poll() == {"scanner": "ok", "card": "fault"}
        assert sink.events == [
            ("device.fault", "card", "scripted serial port: device vanished (unplugged)")]
        port.plug()
        wait_for(lambda: card.state == "ok", "the card reader's recovery")
        watch.poll()
        assert sink.events[-1][:2] == ("device.ok", "card")
    finally:
        merged.stop()


def test_a_merge_survives_a_part_whose_check_breaks() -> None:
    from kiosk.devices import DeviceWatch

    class Broken(SimulatedScanner):
        def check(self) -> str:
            raise RuntimeError("driver bug")

    merged = MultiScanner([SimulatedScanner(name="scanner"), Broken(name="card")])
    merged.start(lambda read: None)
    assert merged.check() == "ok"  # logged; the state still comes from the parts
    merged.last_error = "check failed: boom"  # what the watch writes when a check raises
    assert merged.last_error == "check failed: boom"
    # The watch reports each part by name: the broken one as a fault, the other still ok.
    assert DeviceWatch([merged], RecordingSink()).poll() == {"scanner": "ok", "card": "fault"}
