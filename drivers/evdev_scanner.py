"""USB HID barcode scanners in keyboard mode, read straight from the kernel (evdev).

A keyboard-mode scanner types each code and presses Enter. On a headless station there
is no window to type into, so the driver reads the scanner's input device itself and
grabs it, so the codes do not also land on the console's login prompt. Key presses are
turned into characters with a US layout (what scanners assume unless configured for
another country) plus Shift; `keymap` overrides single keys.

Seam for tests: the device is a `KeyEventSource` returned by an opener; `open_evdev`
opens a real one through python-evdev (imported only there, so a station without it
gets a "fault" with a clear `last_error`, not a crash).
"""

from __future__ import annotations

import logging
import re
import select
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from drivers.base import DeviceUnavailable, HotplugConfig, ReconnectingScanner, register

log = logging.getLogger("thuvien.drivers.evdev_scanner")

EV_KEY = 0x01  # the kernel's event type of key presses (linux/input-event-codes.h)
KEY_DOWN = 1   # event values: 0 release, 1 press, 2 auto-repeat

# Key name -> (unshifted, shifted) on a US keyboard.
US_LAYOUT: dict[str, str] = {
    **{f"KEY_{c}": c.lower() + c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{f"KEY_{d}": d + s for d, s in zip("1234567890", "!@#$%^&*()", strict=True)},
    **{f"KEY_KP{d}": d + d for d in "0123456789"},
    "KEY_MINUS": "-_", "KEY_EQUAL": "=+", "KEY_LEFTBRACE": "[{", "KEY_RIGHTBRACE": "]}",
    "KEY_SEMICOLON": ";:", "KEY_APOSTROPHE": "'\"", "KEY_GRAVE": "`~", "KEY_BACKSLASH": "\\|",
    "KEY_COMMA": ",<", "KEY_DOT": ".>", "KEY_SLASH": "/?", "KEY_SPACE": "  ",
    "KEY_KPMINUS": "--", "KEY_KPPLUS": "++", "KEY_KPASTERISK": "**", "KEY_KPSLASH": "//",
    "KEY_KPDOT": "..",
}
SHIFT_KEYS = ("KEY_LEFTSHIFT", "KEY_RIGHTSHIFT")
END_KEYS = ("KEY_ENTER", "KEY_KPENTER")

_USB_ID = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$")


def _ecodes() -> Any:
    from evdev import ecodes  # python-evdev; Linux only
    return ecodes


class EvdevScannerConfig(HotplugConfig):
    type: Literal["evdev"] = "evdev"
    # Exactly one way to find the scanner: its by-id path (/dev/input/by-id/...-event-kbd),
    # part of its name (`evtest` lists them), or its USB ids as `lsusb` prints them.
    device: str | None = None
    device_name: str | None = Field(default=None, min_length=1)
    usb_id: str | None = None
    # Take the device for this station alone, so codes do not also type on the console.
    grab: bool = True
    # Longer input without Enter is junk and discarded.
    max_length: int = Field(default=128, ge=1, le=4096)
    # Keys a non-US scanner layout puts elsewhere: {"KEY_Z" = "yY"} (unshifted, shifted).
    keymap: dict[str, str] = Field(default_factory=dict)

    @field_validator("usb_id")
    @classmethod
    def _usb_id(cls, value: str | None) -> str | None:
        if value is not None and not _USB_ID.match(value):
            raise ValueError(f'a USB id is "vvvv:pppp" in hexadecimal, not {value!r}')
        return value.lower() if value else value

    @field_validator("keymap")
    @classmethod
    def _keymap(cls, value: dict[str, str]) -> dict[str, str]:
        for key, chars in value.items():
            if not re.fullmatch(r"KEY_[A-Z0-9_]+", key):
                raise ValueError(f"not a key name like KEY_Z: {key!r}")
            if not 1 <= len(chars) <= 2:
                raise ValueError(f"{key}: one or two characters (unshifted, shifted), not {chars!r}")
        return value

    @model_validator(mode="after")
    def _one_way_to_find(self) -> EvdevScannerConfig:
        ways = [w for w in (self.device, self.device_name, self.usb_id) if w is not None]
        if len(ways) != 1:
            raise ValueError("give exactly one of device, device_name, usb_id")
        return self


class KeyDecoder:
    """Key events in, codes out: characters collect until Enter."""

    def __init__(self, *, keymap: dict[str, str] | None = None, max_length: int = 128) -> None:
        ecodes = _ecodes()
        layout = {**US_LAYOUT, **(keymap or {})}
        unknown = [name for name in layout if name not in ecodes.ecodes]
        if unknown:
            raise ValueError(f"unknown key names: {', '.join(unknown)}")
        self._chars = {ecodes.ecodes[name]: (chars[0], chars[-1]) for name, chars in layout.items()}
        self._shift = {ecodes.ecodes[name] for name in SHIFT_KEYS}
        self._end = {ecodes.ecodes[name] for name in END_KEYS}
        self._max_length = max_length
        self.rejected = 0  # inputs dropped as junk
        self.reset()

    def reset(self) -> None:
        self._held: set[int] = set()
        self._buffer: list[str] = []
        self._overflow = False

    def feed(self, event: Any) -> str | None:
        """One `evdev.InputEvent`; the code when it was the Enter that ends one."""
        if event.type != EV_KEY:
            return None  # EV_SYN, EV_MSC scan codes, LEDs
        if event.code in self._shift:
            if event.value == 0:
                self._held.discard(event.code)
            else:
                self._held.add(event.code)
            return None
        if event.value != KEY_DOWN:
            return None  # releases; auto-repeat means a key held, which scanners never do
        if event.code in self._end:
            text, overflow = "".join(self._buffer).strip(), self._overflow
            self._buffer, self._overflow = [], False
            return None if overflow or not text else text
        chars = self._chars.get(event.code)
        if chars is None:
            return None  # function, control and modifier keys carry no character
        if len(self._buffer) >= self._max_length:
            if not self._overflow:
                self.rejected += 1
                log.warning("evdev scanner: more than %d keys without Enter dropped as junk",
                            self._max_length)
            self._overflow = True
            return None
        self._buffer.append(chars[1] if self._held else chars[0])
        return None


class KeyEventSource(Protocol):
    """An opened input device."""

    description: str

    def read_events(self, timeout: float) -> Iterable[Any]:
        """The events that arrived within `timeout` seconds (often none); `OSError` when
        the device is gone."""

    def close(self) -> None: ...


class _EvdevSource:
    def __init__(self, device: Any, description: str) -> None:
        self.device = device
        self.description = description

    def read_events(self, timeout: float) -> list[Any]:
        ready, _, _ = select.select([self.device.fd], [], [], timeout)
        if not ready:
            return []
        try:
            return list(self.device.read())
        except BlockingIOError:
            return []

    def close(self) -> None:
        try:
            self.device.close()  # also releases the grab
        except OSError:
            pass


def _describe(device: Any) -> str:
    return f"{device.path} ({device.name}, {device.info.vendor:04x}:{device.info.product:04x})"


def _find(config: EvdevScannerConfig, evdev: ModuleType) -> Any:
    if config.device is not None:
        try:
            return evdev.InputDevice(config.device)
        except OSError as exc:
            raise DeviceUnavailable(f"cannot open {config.device}: {exc}") from exc
    wanted = (f"name containing {config.device_name!r}" if config.device_name
              else f"USB id {config.usb_id}")
    enter = evdev.ecodes.ecodes["KEY_ENTER"]
    for path in evdev.list_devices():
        try:
            device = evdev.InputDevice(path)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if config.device_name:
            match = config.device_name.lower() in device.name.lower()
        else:
            match = f"{device.info.vendor:04x}:{device.info.product:04x}" == config.usb_id
        # A scanner may show several interfaces; the keyboard one has an Enter key.
        if match and enter in device.capabilities().get(EV_KEY, []):
            return device
        device.close()
    raise DeviceUnavailable(f"no input device with a {wanted}")


def open_evdev(config: EvdevScannerConfig, *, evdev: ModuleType | None = None) -> KeyEventSource:
    """Find, open and grab the scanner's input device."""
    if evdev is None:
        try:
            import evdev
        except ImportError as exc:
            raise DeviceUnavailable(f"python-evdev is not installed: {exc}") from exc
    device = _find(config, evdev)
    if config.grab:
        try:
            device.grab()
        except OSError as exc:
            device.close()
            raise DeviceUnavailable(f"cannot grab {_describe(device)}: another program "
                                    f"holds it ({exc})") from exc
    return _EvdevSource(device, _describe(device))


@register
class EvdevScanner(ReconnectingScanner):
    """A keyboard-mode USB scanner read from its input device: one code per Enter."""

    type_key = "evdev"
    config_model = EvdevScannerConfig

    def __init__(self, config: EvdevScannerConfig, *,
                 opener: Callable[[EvdevScannerConfig], KeyEventSource] = open_evdev,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name=config.name, reconnect_initial=config.reconnect_initial,
                         reconnect_max=config.reconnect_max, clock=clock)
        self.config = config
        self._opener = opener
        self._source: KeyEventSource | None = None
        self.decoder: KeyDecoder | None = None

    @classmethod
    def from_config(cls, config: EvdevScannerConfig) -> EvdevScanner:
        return cls(config)

    def _connect(self) -> None:
        if self.decoder is None:
            try:
                self.decoder = KeyDecoder(keymap=self.config.keymap, max_length=self.config.max_length)
            except ImportError as exc:
                raise DeviceUnavailable(f"python-evdev is not installed: {exc}") from exc
            except ValueError as exc:
                raise DeviceUnavailable(f"bad keymap: {exc}") from exc
        self.decoder.reset()  # a code cut by an unplug is not a code
        self._source = self._opener(self.config)

    def _read_codes(self, timeout: float) -> list[str]:
        source, decoder = self._source, self.decoder
        if source is None or decoder is None:
            raise DeviceUnavailable("not open")
        try:
            events = list(source.read_events(timeout))
        except OSError as exc:
            raise DeviceUnavailable(f"{source.description}: {exc}") from exc
        return [code for event in events if (code := decoder.feed(event)) is not None]

    def _disconnect(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            source.close()
