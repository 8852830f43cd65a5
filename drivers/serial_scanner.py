"""Barcode scanners on a serial port (RS-232, or USB in its CDC/serial emulation mode).

Layers as for the RFID readers: the port moves bytes (`ScannerSerialPort`, pyserial,
reusing the RFID transport's by-id resolution, exclusive open and error mapping);
`FrameDecoder` turns the byte stream into codes (prefix, suffix, terminator, length
limit, text encoding); `SerialScanner` reads on its own thread and survives unplugging
(see `ReconnectingScanner`). `ScriptedSerialPort` plays bytes written in advance: the
hardware edge in tests.

Scanners on a serial port send unasked: the code, then a terminator (CR by default on
most models). Bytes that cannot be a code are dropped, never delivered: undecodable
frames, control characters, and a run of bytes longer than any code that never meets a
terminator (line noise, a wrong baud rate).
"""

from __future__ import annotations

import codecs
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

import serial
from pydantic import Field, field_validator

from drivers.base import DeviceUnavailable, HotplugConfig, ReconnectingScanner, register
from drivers.rfid.transport import POLL, SerialTransport, TransportError, termios_error

log = logging.getLogger("thuvien.drivers.serial_scanner")

_NAMED_TERMINATORS = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "TAB": b"\t",
                      "ETX": b"\x03", "EOT": b"\x04"}
_PARITIES = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD,
             "mark": serial.PARITY_MARK, "space": serial.PARITY_SPACE}


def parse_terminator(text: str) -> bytes:
    """`CR`, `LF`, `CRLF`, `TAB`, `ETX`, `EOT`; hex bytes (`0x03`, `0x0D0A`); or the
    characters themselves (`"\\r"`, `"\\u0003"` in TOML)."""
    if text.upper() in _NAMED_TERMINATORS:
        return _NAMED_TERMINATORS[text.upper()]
    if text[:2].lower() == "0x" and len(text) > 2:
        try:
            value = bytes.fromhex(text[2:])
        except ValueError:
            raise ValueError(f"not hexadecimal bytes: {text!r}") from None
    else:
        try:
            value = text.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"a terminator is bytes, not {text!r}") from None
    if not 1 <= len(value) <= 4:
        raise ValueError(f"a terminator is 1 to 4 bytes, not {len(value)}: {text!r}")
    return value


class SerialScannerConfig(HotplugConfig):
    type: Literal["serial"] = "serial"
    # A /dev/serial/by-id/... path (stable across replugs and USB sockets) or a pyserial URL.
    port: str = Field(min_length=1)
    baudrate: int = Field(default=9600, gt=0)   # the factory default of most scanners
    parity: Literal["none", "even", "odd", "mark", "space"] = "none"
    bytesize: Literal[5, 6, 7, 8] = 8
    stopbits: Literal[1, 1.5, 2] = 1
    # Configured on the scanner (an AIM symbology id such as "]E0", STX...): removed when
    # present at the start or end of a code.
    prefix: str = ""
    suffix: str = ""
    terminator: str = "CR"
    # Longer runs of bytes without a terminator are junk and discarded.
    max_length: int = Field(default=128, ge=1, le=4096)
    encoding: str = "utf-8"

    @field_validator("terminator")
    @classmethod
    def _terminator(cls, value: str) -> str:
        parse_terminator(value)
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None
        return value


class FrameDecoder:
    """The byte stream of a scanner, cut into codes at the terminator."""

    def __init__(self, *, terminator: bytes, prefix: bytes = b"", suffix: bytes = b"",
                 max_length: int = 128, encoding: str = "utf-8") -> None:
        self.terminator, self.prefix, self.suffix = terminator, prefix, suffix
        self.encoding = encoding
        self.rejected = 0  # frames dropped as junk, for diagnostics and tests
        self._limit = max_length + len(prefix) + len(suffix)
        self._buffer = bytearray()
        self._discarding = False  # inside junk that overflowed: skip to the next terminator

    @classmethod
    def from_config(cls, config: SerialScannerConfig) -> FrameDecoder:
        return cls(terminator=parse_terminator(config.terminator),
                   prefix=config.prefix.encode(config.encoding),
                   suffix=config.suffix.encode(config.encoding),
                   max_length=config.max_length, encoding=config.encoding)

    def reset(self) -> None:
        """Forget a partial frame (the device vanished mid-code)."""
        self._buffer.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        codes: list[str] = []
        while (end := self._buffer.find(self.terminator)) >= 0:
            frame = bytes(self._buffer[:end])
            del self._buffer[:end + len(self.terminator)]
            if self._discarding:
                self._discarding = False
            elif code := self._code(frame):
                codes.append(code)
        # Keep what could be the start of a split terminator.
        if len(self._buffer) > self._limit + len(self.terminator) - 1:
            if not self._discarding:
                self.rejected += 1
                log.warning("serial scanner: %d bytes without a terminator dropped as junk",
                            len(self._buffer))
            del self._buffer[:len(self._buffer) - (len(self.terminator) - 1)]
            self._discarding = True
        return codes

    def _code(self, frame: bytes) -> str | None:
        if len(frame) > self._limit:
            self.rejected += 1
            log.warning("serial scanner: a %d-byte frame is too long for a code; dropped", len(frame))
            return None
        if self.prefix and frame.startswith(self.prefix):
            frame = frame[len(self.prefix):]
        if self.suffix and frame.endswith(self.suffix):
            frame = frame[:-len(self.suffix)]
        try:
            text = frame.decode(self.encoding)
        except UnicodeDecodeError:
            # A corrupted code is worse than none: the student scans again.
            self.rejected += 1
            log.warning("serial scanner: dropped a frame that is not %s text: %s",
                        self.encoding, frame.hex(" "))
            return None
        code = "".join(ch for ch in text if ch.isprintable()).strip()
        return code or None


class ByteSource(Protocol):
    """Where a serial scanner's bytes come from: a port, or a script in tests."""

    description: str

    @property
    def is_open(self) -> bool: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def read_available(self, timeout: float) -> bytes:
        """What has arrived, waiting up to `timeout` seconds for a first byte;
        `TransportError` when the port vanished."""


class ScannerSerialPort(SerialTransport):
    """The RFID readers' serial transport with the scanner's framing (data bits, stop
    bits) and a read of whatever has arrived, so a code is delivered as soon as it is in."""

    def __init__(self, port: str, *, baudrate: int, parity: str = serial.PARITY_NONE,
                 bytesize: int = serial.EIGHTBITS, stopbits: float = serial.STOPBITS_ONE) -> None:
        super().__init__(port, baudrate=baudrate, parity=parity)
        self._bytesize, self._stopbits = bytesize, stopbits

    @classmethod
    def from_config(cls, config: SerialScannerConfig) -> ScannerSerialPort:
        return cls(config.port, baudrate=config.baudrate, parity=_PARITIES[config.parity],
                   bytesize=config.bytesize, stopbits=config.stopbits)

    def open(self) -> None:
        if self.is_open:
            return
        super().open()
        port = self._port_or_raise()
        try:
            if (port.bytesize, port.stopbits) != (self._bytesize, self._stopbits):
                port.bytesize, port.stopbits = self._bytesize, self._stopbits
        except (OSError, ValueError, termios_error) as exc:
            self.close()
            raise TransportError(f"cannot set up {self.description}: {exc}") from exc

    def read_available(self, timeout: float) -> bytes:
        port = self._port_or_raise()
        deadline = time.monotonic() + timeout
        try:
            data = port.read(1)  # waits at most POLL
            while not data and time.monotonic() + POLL <= deadline:
                data = port.read(1)
            if data and port.in_waiting:
                data += port.read(port.in_waiting)
        except (OSError, termios_error) as exc:  # SerialException is an OSError
            raise TransportError(f"{self.description}: read failed: {exc}") from exc
        return data


class Unplugged:
    """A script step: the port vanishes; `failed_opens` more opens fail before it is
    back, or with None, every open fails until `plug()`."""

    def __init__(self, failed_opens: int | None = 0) -> None:
        self.failed_opens = failed_opens

    def __repr__(self) -> str:
        return f"Unplugged(failed_opens={self.failed_opens})"


class ScriptedSerialPort:
    """A scanner's bytes written in advance, each chunk one read, for tests.

    Steps are byte chunks (what one read returns, so a code can be split anywhere) and
    `Unplugged` marks. More steps can be added while the scanner runs (`send`, `unplug`).
    Reads with nothing scripted wait up to their timeout, as a quiet port does.
    """

    def __init__(self, *steps: bytes | Unplugged, description: str = "scripted serial port") -> None:
        self.description = description
        self._steps: deque[bytes | Unplugged] = deque(steps)
        self._open = False
        self._unplugged = False
        self._failing_opens: int | None = None  # while unplugged; None: until `plug()`
        self.opens = 0           # successful opens
        self.failed_opens = 0    # refused opens, for backoff tests

    def send(self, *chunks: bytes) -> None:
        self._steps.extend(chunks)

    def unplug(self, failed_opens: int | None = None) -> None:
        """Vanish once the chunks sent before are read."""
        self._steps.append(Unplugged(failed_opens))

    def plug(self) -> None:
        self._unplugged = False

    @property
    def pending(self) -> int:
        """Steps not yet played."""
        return len(self._steps)

    @property
    def is_open(self) -> bool:
        return self._open

    def _vanish(self, step: Unplugged) -> TransportError:
        self._open = False
        self._unplugged = True
        self._failing_opens = step.failed_opens
        return TransportError(f"{self.description}: device vanished (unplugged)")

    def open(self) -> None:
        if self._open:
            return
        if self._steps and isinstance(self._steps[0], Unplugged):
            self._vanish(self._steps.popleft())  # not plugged in when first looked for
            self.failed_opens += 1
            raise TransportError(f"{self.description}: no such device (unplugged)")
        if self._unplugged:
            if self._failing_opens is None or self._failing_opens > 0:
                if self._failing_opens is not None:
                    self._failing_opens -= 1
                self.failed_opens += 1
                raise TransportError(f"{self.description}: no such device (unplugged)")
            self._unplugged = False
        self._open = True
        self.opens += 1

    def close(self) -> None:
        self._open = False

    def read_available(self, timeout: float) -> bytes:
        if not self._open:
            raise TransportError(f"{self.description} is not open")
        if not self._steps:
            time.sleep(min(timeout, 0.01))
            return b""
        step = self._steps.popleft()
        if isinstance(step, Unplugged):
            raise self._vanish(step)
        return step


@register
class SerialScanner(ReconnectingScanner):
    """A barcode scanner on a serial port: one code per terminator."""

    type_key = "serial"
    config_model = SerialScannerConfig

    def __init__(self, config: SerialScannerConfig, port: ByteSource | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name=config.name, reconnect_initial=config.reconnect_initial,
                         reconnect_max=config.reconnect_max, clock=clock)
        self.config = config
        self.port: ByteSource = port if port is not None else ScannerSerialPort.from_config(config)
        self.decoder = FrameDecoder.from_config(config)

    @classmethod
    def from_config(cls, config: SerialScannerConfig) -> SerialScanner:
        return cls(config)

    def _connect(self) -> None:
        self.decoder.reset()
        try:
            self.port.open()
        except TransportError as exc:
            raise DeviceUnavailable(str(exc)) from exc

    def _read_codes(self, timeout: float) -> list[str]:
        try:
            data = self.port.read_available(timeout)
        except TransportError as exc:
            raise DeviceUnavailable(str(exc)) from exc
        return self.decoder.feed(data) if data else []

    def _disconnect(self) -> None:
        self.port.close()
