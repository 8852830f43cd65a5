"""Byte transports under the RFID reader protocols: a serial port, and a scripted one.

A transport moves bytes and knows nothing of frames. Reads wait at most `timeout`
seconds and return what arrived by then: fewer bytes than asked, or a line without its
`\\n`, means the time ran out. Anything that makes the port unusable (unplugged, gone
mid-exchange, refused) is a `TransportError`; the reader above turns it into a fault and
reopens the port later (hot-plug).

`ScriptedTransport` is the hardware edge in tests: it expects exact bytes to be written,
answers each expected write with scripted bytes, fails the test on anything else, and can
unplug itself at a chosen point of the conversation.
"""

from __future__ import annotations

import abc
import logging
import time
from collections import deque
from dataclasses import dataclass

import serial

try:  # a vanished tty fails some calls with termios.error, which is not an OSError
    from termios import error as termios_error
except ImportError:  # not POSIX
    class termios_error(Exception):  # type: ignore[no-redef]  # noqa: N801
        pass

log = logging.getLogger("thuvien.drivers.rfid")

# pyserial's own timeout: reads wait in slices this long until the caller's deadline, so
# a longer wait (an inventory) never reconfigures the tty.
POLL = 0.05


class TransportError(Exception):
    """The port cannot be used: absent, vanished mid-exchange, or refused by the system."""


class Transport(abc.ABC):
    """A byte pipe to one reader."""

    # Where the bytes go, for logs and errors: a device path or a URL.
    description: str

    @property
    @abc.abstractmethod
    def is_open(self) -> bool: ...

    @abc.abstractmethod
    def open(self) -> None:
        """Open the port; `TransportError` if it is not there. Opening an open port is a no-op."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the port; safe to call twice and on a port that vanished."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def read(self, size: int, timeout: float) -> bytes:
        """Up to `size` bytes; fewer when `timeout` seconds passed first."""

    @abc.abstractmethod
    def read_line(self, timeout: float, max_size: int) -> bytes:
        """Bytes up to and including `\\n`; without it when the time or `max_size` ran out."""

    @abc.abstractmethod
    def discard_input(self) -> None:
        """Drop whatever arrived unasked (late replies, line noise) before a new command."""


class SerialTransport(Transport):
    """A serial port through pyserial: a device path (`/dev/serial/by-id/...`, which
    survives replugging into another USB socket) or any pyserial URL (`loop://`, `rfc2217://`).

    The path is resolved at every `open()`, so a by-id link that reappears after a replug
    is found again however the kernel renumbered the tty behind it.
    """

    def __init__(self, port: str, *, baudrate: int, parity: str = serial.PARITY_NONE,
                 write_timeout: float = 1.0) -> None:
        self.description = port
        self._port = port
        self._baudrate = baudrate
        self._parity = parity
        self._write_timeout = write_timeout
        self._serial: serial.SerialBase | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        if self._serial is not None:
            return
        # A second program on the same reader would steal half of every reply.
        extra = {} if "://" in self._port else {"exclusive": True}
        try:
            self._serial = serial.serial_for_url(
                self._port, baudrate=self._baudrate, parity=self._parity,
                bytesize=serial.EIGHTBITS, stopbits=serial.STOPBITS_ONE,
                timeout=POLL, write_timeout=self._write_timeout, **extra)
        except (OSError, ValueError, termios_error) as exc:  # SerialException is an OSError
            raise TransportError(f"cannot open {self._port}: {exc}") from exc

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except (OSError, termios_error):  # the device is already gone; nothing to release
                pass

    def _port_or_raise(self) -> serial.SerialBase:
        if self._serial is None:
            raise TransportError(f"{self._port} is not open")
        return self._serial

    def write(self, data: bytes) -> None:
        port = self._port_or_raise()
        try:
            port.write(data)
        except (OSError, termios_error) as exc:
            raise TransportError(f"{self._port}: write failed: {exc}") from exc

    def read(self, size: int, timeout: float) -> bytes:
        port = self._port_or_raise()
        deadline = time.monotonic() + timeout
        data = bytearray()
        try:
            while len(data) < size and time.monotonic() < deadline:
                data += port.read(size - len(data))
        except (OSError, termios_error) as exc:
            raise TransportError(f"{self._port}: read failed: {exc}") from exc
        return bytes(data)

    def read_line(self, timeout: float, max_size: int) -> bytes:
        port = self._port_or_raise()
        deadline = time.monotonic() + timeout
        data = bytearray()
        try:
            while (not data.endswith(b"\n") and len(data) < max_size
                   and time.monotonic() < deadline):
                data += port.read_until(b"\n", max_size - len(data))
        except (OSError, termios_error) as exc:
            raise TransportError(f"{self._port}: read failed: {exc}") from exc
        return bytes(data)

    def discard_input(self) -> None:
        port = self._port_or_raise()
        try:
            port.reset_input_buffer()
        except (OSError, termios_error) as exc:
            raise TransportError(f"{self._port}: {exc}") from exc


# --- the scripted transport for tests ------------------------------------------------------

@dataclass(frozen=True)
class Exchange:
    """The reader expects exactly `written`, then answers `reply` (possibly nothing)."""

    written: bytes
    reply: bytes = b""


@dataclass(frozen=True)
class Unplug:
    """The port vanishes at this point of the conversation (the next write or read, or
    the next open of a closed port, fails); `failed_opens` more opens fail before it is
    back."""

    failed_opens: int = 0


def _hex(data: bytes) -> str:
    return data.hex(" ") if data else "(nothing)"


class ScriptedTransport(Transport):
    """A conversation written in advance: exact bytes expected, exact bytes answered.

    Reads never wait: when no scripted byte is left they return what there is, as a real
    port does when its timeout passes. A write that differs from the script, or comes when
    nothing more is scripted, raises `AssertionError` at once and is kept in `problems`,
    so `assert_done()` fails the test even if the driver swallowed the exception.
    """

    def __init__(self, *steps: Exchange | Unplug, description: str = "scripted") -> None:
        self.description = description
        self._steps: deque[Exchange | Unplug] = deque(steps)
        self._written = bytearray()   # bytes of the current expected write so far
        self._inbox = bytearray()     # bytes the driver has yet to read
        self._open = False
        self._failing_opens: int | None = None  # not None while unplugged
        self.problems: list[str] = []
        self.opens = 0                # successful `open()` calls, for hot-plug tests
        self.discarded = bytearray()  # what `discard_input` dropped

    # scripting
    def expect(self, written: bytes, reply: bytes = b"") -> ScriptedTransport:
        self._steps.append(Exchange(written, reply))
        return self

    def unplug(self, failed_opens: int = 0) -> ScriptedTransport:
        self._steps.append(Unplug(failed_opens))
        return self

    def assert_done(self) -> None:
        """Every scripted step happened and nothing unexpected was written."""
        if self.problems:
            raise AssertionError("; ".join(self.problems))
        if self._written:
            raise AssertionError(f"an incomplete write is pending: {_hex(bytes(self._written))}")
        if self._steps:
            raise AssertionError(f"{len(self._steps)} scripted step(s) never happened; "
                                 f"next: {self._steps[0]!r}")

    # the Transport
    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        if not self._open and self._steps and isinstance(self._steps[0], Unplug):
            # Not plugged in when the driver first looks: this attempt fails too.
            step = self._steps.popleft()
            self._failing_opens = step.failed_opens
            raise TransportError(f"{self.description}: no such device (unplugged)")
        if self._failing_opens is not None:
            if self._failing_opens > 0:
                self._failing_opens -= 1
                raise TransportError(f"{self.description}: no such device (unplugged)")
            self._failing_opens = None  # plugged back in
        if not self._open:
            self._open = True
            self.opens += 1

    def close(self) -> None:
        self._open = False
        self._inbox.clear()

    def _problem(self, message: str) -> AssertionError:
        self.problems.append(message)
        return AssertionError(message)

    def _check_usable(self) -> None:
        if self._failing_opens is not None:
            raise TransportError(f"{self.description}: device vanished")
        if not self._open:
            raise self._problem(f"{self.description}: used while closed")

    def _unplug_now(self, step: Unplug) -> TransportError:
        self._steps.popleft()
        self._open = False
        self._inbox.clear()
        self._written.clear()
        self._failing_opens = step.failed_opens
        return TransportError(f"{self.description}: device vanished (unplugged)")

    def write(self, data: bytes) -> None:
        self._check_usable()
        step = self._steps[0] if self._steps else None
        if isinstance(step, Unplug):
            raise self._unplug_now(step)
        if step is None:
            raise self._problem(f"unexpected write {_hex(data)}: nothing more is scripted")
        self._written += data
        so_far = bytes(self._written)
        if not step.written.startswith(so_far):
            self._written.clear()
            raise self._problem(f"unexpected write: got {_hex(so_far)}, "
                                f"expected {_hex(step.written)}")
        if so_far == step.written:
            self._steps.popleft()
            self._written.clear()
            self._inbox += step.reply

    def _take(self, count: int) -> bytes:
        chunk = bytes(self._inbox[:count])
        del self._inbox[:count]
        return chunk

    def _vanish_if_scripted(self) -> None:
        # The port dies while the driver waits for a reply it will never get.
        if not self._inbox and self._steps and isinstance(self._steps[0], Unplug):
            raise self._unplug_now(self._steps[0])

    def read(self, size: int, timeout: float) -> bytes:
        self._check_usable()
        self._vanish_if_scripted()
        return self._take(size)

    def read_line(self, timeout: float, max_size: int) -> bytes:
        self._check_usable()
        self._vanish_if_scripted()
        end = self._inbox.find(b"\n")
        return self._take(min(end + 1 if end >= 0 else len(self._inbox), max_size))

    def discard_input(self) -> None:
        self._check_usable()
        self.discarded += self._inbox
        self._inbox.clear()
