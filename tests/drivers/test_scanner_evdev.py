"""Keyboard-mode USB scanners read from evdev: real `InputEvent`s in, codes out.

This machine has no /dev/input: the device (the event source) is the only fake, and
`open_evdev` is driven with a stand-in for the evdev module's device listing.
"""

from __future__ import annotations

import os
import string
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from evdev import InputEvent, ecodes
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers import create_scanner
from drivers.base import DeviceUnavailable, Read
from drivers.evdev_scanner import (
    EvdevScanner,
    EvdevScannerConfig,
    KeyDecoder,
    _EvdevSource,
    open_evdev,
)
from kiosk.config import StationConfig
from test_scanner_contract import US_KEYS, FakeInputBus, junk_events, key_events, wait_for


def decode(events: list[InputEvent], decoder: KeyDecoder | None = None) -> list[str]:
    decoder = decoder or KeyDecoder()
    return [code for event in events if (code := decoder.feed(event)) is not None]


def key(name: str, value: int = 1) -> InputEvent:
    return InputEvent(0, 0, ecodes.EV_KEY, ecodes.ecodes[name], value)


# --- decoding ----------------------------------------------------------------------------

def test_a_code_typed_with_shift_reads_as_typed() -> None:
    assert decode(key_events("TN00315") + key_events("HS-2026-0008")) == ["TN00315", "HS-2026-0008"]


@given(st.text(alphabet=sorted(set(US_KEYS) - {" "}), min_size=1, max_size=60))
def test_every_character_of_the_us_layout_round_trips(text: str) -> None:
    assert decode(key_events(text)) == [text]


def test_symbols_of_library_codes() -> None:
    text = "TK.00131/2-a_B:c+9?"
    assert decode(key_events(text)) == [text]


def test_keypad_digits_and_keypad_enter() -> None:
    events = [key(f"KEY_KP{d}") for d in "978604"] + [key("KEY_KPDOT"), key("KEY_KPMINUS"),
                                                      key("KEY_KPENTER")]
    assert decode(events) == ["978604.-"]


def test_right_shift_and_shift_released_mid_code() -> None:
    events = [key("KEY_RIGHTSHIFT"), key("KEY_T"), key("KEY_RIGHTSHIFT", 0), key("KEY_N"),
              key("KEY_LEFTSHIFT"), key("KEY_RIGHTSHIFT"), key("KEY_LEFTSHIFT", 0), key("KEY_X"),
              key("KEY_RIGHTSHIFT", 0), key("KEY_ENTER")]
    assert decode(events) == ["TnX"]


def test_junk_events_type_nothing() -> None:
    decoder = KeyDecoder()
    assert decode(junk_events() + key_events("TN00315"), decoder) == ["TN00315"]


def test_input_longer_than_any_code_is_dropped_up_to_enter() -> None:
    decoder = KeyDecoder(max_length=8)
    assert decode(key_events("123456789") + key_events("12345678"), decoder) == ["12345678"]
    assert decoder.rejected == 1


def test_a_keymap_overrides_keys_of_another_layout() -> None:
    # A scanner set to a French AZERTY layout sends KEY_Q for "a" and KEY_W for "z".
    decoder = KeyDecoder(keymap={"KEY_Q": "aA", "KEY_W": "zZ", "KEY_SEMICOLON": "m"})
    events = [key("KEY_LEFTSHIFT"), key("KEY_Q"), key("KEY_LEFTSHIFT", 0), key("KEY_W"),
              key("KEY_SEMICOLON"), key("KEY_ENTER")]
    assert decode(events, decoder) == ["Azm"]


def test_an_unknown_key_name_in_the_keymap_is_refused() -> None:
    with pytest.raises(ValueError, match="KEY_NOPE"):
        KeyDecoder(keymap={"KEY_NOPE": "x"})


# --- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize(("table", "words"), [
    ({"type": "evdev"}, "exactly one of"),
    ({"type": "evdev", "device": "/dev/input/event3", "usb_id": "0c2e:0b61"}, "exactly one of"),
    ({"type": "evdev", "usb_id": "0c2e-0b61"}, "vvvv:pppp"),
    ({"type": "evdev", "device_name": "Honeywell", "keymap": {"Q": "a"}}, "key name"),
    ({"type": "evdev", "device_name": "Honeywell", "keymap": {"KEY_Q": "abc"}}, "one or two"),
])
def test_bad_evdev_configs_are_refused(table: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        StationConfig.model_validate({"site": "s", "station": "k", "devices": {"scanner": table}})


def test_a_station_file_configures_an_evdev_scanner() -> None:
    station = StationConfig.model_validate({"site": "s", "station": "k", "devices": {"scanner": {
        "type": "evdev", "usb_id": "0C2E:0B61", "name": "wedge"}}})
    scanner = create_scanner(station.devices.scanner)
    assert isinstance(scanner, EvdevScanner) and scanner.name == "wedge"
    assert scanner.config.usb_id == "0c2e:0b61"


# --- the scanner ---------------------------------------------------------------------------

def scanner_on(bus: FakeInputBus, **extra: Any) -> tuple[EvdevScanner, list[Read]]:
    config = EvdevScannerConfig(**{"usb_id": "0c2e:0b61", "reconnect_initial": 0.01,
                                   "reconnect_max": 0.05, **extra})
    scanner = EvdevScanner(config, opener=bus.open)
    reads: list[Read] = []
    scanner.start(reads.append)
    return scanner, reads


def test_the_scanner_delivers_codes_and_survives_an_unplug() -> None:
    bus = FakeInputBus()
    scanner, reads = scanner_on(bus)
    try:
        bus.send(key_events("TN00315") + key_events("TK00", enter=False))
        wait_for(lambda: len(reads) == 1, "the first read")
        first = bus.device
        bus.unplug()
        wait_for(lambda: scanner.state == "fault", "the fault")
        assert "No such device" in scanner.last_error and first is not None and first.closed
        bus.plugged = True
        wait_for(lambda: scanner.state == "ok", "the recovery")
        assert bus.opens == 2
        bus.send(key_events("131"))  # "TK00" was cut by the unplug: not glued on
        wait_for(lambda: len(reads) == 2, "the read after the replug")
        assert [r.code for r in reads] == ["TN00315", "131"]
    finally:
        scanner.stop()
    assert bus.device is not None and bus.device.closed


def test_a_scanner_missing_at_start_faults_with_the_reason() -> None:
    bus = FakeInputBus()
    bus.plugged = False
    scanner, _ = scanner_on(bus)
    try:
        assert scanner.state == "fault"
        assert scanner.last_error == "no input device with a USB id 0c2e:0b61"
        bus.plugged = True
        wait_for(lambda: scanner.state == "ok", "the scanner to appear")
    finally:
        scanner.stop()


def test_without_python_evdev_the_scanner_faults_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "evdev", None)  # `import evdev` fails
    scanner = EvdevScanner(EvdevScannerConfig(device="/dev/input/by-id/usb-X-event-kbd",
                                              reconnect_initial=0.01, reconnect_max=0.05))
    scanner.start(lambda read: None)
    try:
        assert scanner.state == "fault"
        assert "python-evdev is not installed" in scanner.last_error
    finally:
        scanner.stop()


# --- finding and grabbing the device -------------------------------------------------------

class FakeDevice:
    """What `evdev.InputDevice(path)` returns, as far as `open_evdev` looks."""

    def __init__(self, path: str, name: str, vendor: int, product: int, keys: list[int],
                 grab_error: OSError | None = None) -> None:
        self.path, self.name = path, name
        self.info = SimpleNamespace(vendor=vendor, product=product)
        self._keys = keys
        self._grab_error = grab_error
        self.grabbed = self.closed = False

    def capabilities(self) -> dict[int, list[int]]:
        return {ecodes.EV_KEY: self._keys, ecodes.EV_SYN: [0]}

    def grab(self) -> None:
        if self._grab_error is not None:
            raise self._grab_error
        self.grabbed = True

    def close(self) -> None:
        self.closed = True


def fake_evdev(*devices: FakeDevice, missing: tuple[str, ...] = ()) -> Any:
    by_path = {device.path: device for device in devices}

    def input_device(path: str) -> FakeDevice:
        if path in missing or path not in by_path:
            raise FileNotFoundError(2, "No such file or directory", path)
        return by_path[path]

    return SimpleNamespace(InputDevice=input_device, ecodes=ecodes,
                           list_devices=lambda: [*missing, *by_path])


KEYBOARD = [ecodes.KEY_A, ecodes.KEY_1, ecodes.KEY_ENTER]
# A Honeywell Voyager shows a keyboard and a consumer-control interface; a mouse is nearby.
MOUSE = FakeDevice("/dev/input/event2", "Logitech USB Optical Mouse", 0x046D, 0xC077, [ecodes.BTN_LEFT])
CONTROL = FakeDevice("/dev/input/event4", "Honeywell Imaging Voyager 1200g Consumer Control",
                     0x0C2E, 0x0B61, [ecodes.KEY_VOLUMEUP])
SCANNER = FakeDevice("/dev/input/event5", "Honeywell Imaging Voyager 1200g", 0x0C2E, 0x0B61, KEYBOARD)


@pytest.mark.parametrize("how", [{"usb_id": "0c2e:0b61"}, {"device_name": "voyager"},
                                 {"device": "/dev/input/event5"}])
def test_the_keyboard_interface_is_found_and_grabbed(how: dict[str, str]) -> None:
    for device in (MOUSE, CONTROL, SCANNER):
        device.grabbed = device.closed = False
    evdev = fake_evdev(MOUSE, CONTROL, SCANNER, missing=("/dev/input/event9",))
    source = open_evdev(EvdevScannerConfig(**how), evdev=evdev)
    assert SCANNER.grabbed and not SCANNER.closed
    assert source.description == "/dev/input/event5 (Honeywell Imaging Voyager 1200g, 0c2e:0b61)"
    if "device" not in how:
        assert MOUSE.closed and CONTROL.closed  # the others are not kept open


def test_grabbing_is_optional() -> None:
    device = FakeDevice("/dev/input/event5", "Scanner", 1, 2, KEYBOARD)
    open_evdev(EvdevScannerConfig(device_name="scanner", grab=False), evdev=fake_evdev(device))
    assert not device.grabbed


def test_no_matching_device_and_a_busy_device_are_clear_errors() -> None:
    with pytest.raises(DeviceUnavailable, match="no input device with a name containing 'zebra'"):
        open_evdev(EvdevScannerConfig(device_name="zebra"), evdev=fake_evdev(MOUSE, SCANNER))
    with pytest.raises(DeviceUnavailable, match="cannot open /dev/input/by-id/usb-X-event-kbd"):
        open_evdev(EvdevScannerConfig(device="/dev/input/by-id/usb-X-event-kbd"),
                   evdev=fake_evdev())
    busy = FakeDevice("/dev/input/event5", "Scanner", 1, 2, KEYBOARD,
                      grab_error=OSError(16, "Device or resource busy"))
    with pytest.raises(DeviceUnavailable, match="another program holds it"):
        open_evdev(EvdevScannerConfig(device_name="scanner"), evdev=fake_evdev(busy))
    assert busy.closed


def test_the_evdev_source_waits_on_the_device_and_reports_a_vanished_one() -> None:
    read_end, write_end = os.pipe()

    class Device:
        fd = read_end
        gone = False

        def read(self) -> list[InputEvent]:
            os.read(read_end, 1)
            if self.gone:
                raise OSError(19, "No such device")
            return key_events("7")

        def close(self) -> None:
            os.close(read_end)

    device = Device()
    source = _EvdevSource(device, "test")
    try:
        assert source.read_events(0.01) == []  # nothing ready: no read
        os.write(write_end, b"x")
        assert decode(source.read_events(1.0)) == ["7"]
        device.gone = True
        os.write(write_end, b"x")
        with pytest.raises(OSError, match="No such device"):
            source.read_events(1.0)
    finally:
        source.close()
        os.close(write_end)


def test_the_layout_covers_what_library_codes_use() -> None:
    needed = set(string.ascii_letters + string.digits + "-./_:+*#")
    assert needed <= set(US_KEYS)
