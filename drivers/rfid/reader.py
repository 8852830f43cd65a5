"""The HF RFID reader interface: ISO 15693 library tags on a pad, in a gate, in a chute.

A reader finds every tag in its field at once (`inventory`: a stack of books on the pad),
reads a tag's user blocks, reads its AFI and writes it. It hands back raw values (UID,
DSFID, AFI, block bytes); what the bytes mean (ISO 28560) is decoded elsewhere.

Each driver owns a pydantic config picked by its `type` key and registers itself in
`RFID_READERS`, as the scanners do in `drivers.base`. `SerialRfidReader` holds what every
reader behind a serial port shares: one exchange at a time, and hot-plug: an unplugged
reader turns the state to "fault", the port is reopened with backoff when the reader is
back, and the state returns to "ok" without a restart.

UIDs are 16 hex digits, most significant byte first ("E004..."), as tags and phone apps
print them.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.base import DeviceState, Registry
from drivers.rfid.transport import Transport, TransportError

log = logging.getLogger("thuvien.drivers.rfid")

_UID = re.compile(r"^[0-9A-F]{16}$")


def normalize_uid(uid: str) -> str:
    """`e0:04:01:...` or `E00401...` -> `E00401...`; ValueError if it is not 8 bytes of hex."""
    cleaned = uid.strip().upper().replace(":", "").replace(" ", "")
    if not _UID.match(cleaned):
        raise ValueError(f"not an ISO 15693 UID (16 hex digits): {uid!r}")
    return cleaned


def check_byte(value: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ValueError(f"{what} must be a byte (0..255), not {value!r}")
    return value


def check_blocks(first: int, count: int) -> None:
    # ISO 15693 addresses blocks with one byte.
    if not 0 <= first <= 0xFF or count < 1 or first + count > 0x100:
        raise ValueError(f"blocks {first}..{first + count - 1} are outside 0..255")


@dataclass(frozen=True)
class TagRead:
    """One tag found by an inventory."""

    uid: str
    dsfid: int
    afi: int | None = None  # only some readers report it with the inventory
    at: float = field(default_factory=time.monotonic, compare=False)  # monotonic seconds


@dataclass(frozen=True)
class TagInfo:
    """A tag's answer to Get System Information."""

    uid: str
    dsfid: int
    afi: int
    block_size: int | None = None   # bytes per block
    block_count: int | None = None
    ic_ref: int | None = None


# --- errors --------------------------------------------------------------------------------

class RfidError(Exception):
    """Something a reader could not do."""


class ReaderFault(RfidError):
    """The reader itself is not working: its state is "fault" until it answers again."""


class ReaderUnavailable(ReaderFault):
    """The port is gone (unplugged) or cannot be opened; reopened later with backoff."""


class ReaderNotResponding(ReaderFault):
    """The port is there but the reader did not answer, even after retries."""


class ReaderProtocolError(ReaderFault):
    """Replies that cannot be understood: junk, cut-short or corrupted frames (after
    retries), or a reply that does not fit the command."""


class ReaderStatusError(RfidError):
    """The reader understood the command and refused it (unsupported, bad parameter)."""

    def __init__(self, code: int | str, text: str) -> None:
        self.code = code
        self.text = text
        shown = f"0x{code:02X}" if isinstance(code, int) else code
        super().__init__(f"reader refused the command: {shown} {text}")


class TagOperationError(RfidError):
    """The reader works; the operation on one tag failed. Trying again may help."""


class TagNotFound(TagOperationError):
    """The tag did not answer: it left the field (a book lifted mid-read)."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        super().__init__(f"tag {uid} did not answer (no longer in the reader's field?)")


# ISO/IEC 15693-3 response error codes.
ISO15693_ERRORS = {
    0x01: "command not supported",
    0x02: "command not recognized",
    0x03: "option not supported",
    0x0F: "unknown error",
    0x10: "block not available",
    0x11: "block already locked",
    0x12: "block locked, content cannot be changed",
    0x13: "block not successfully programmed",
    0x14: "block not successfully locked",
}


class TagError(TagOperationError):
    """The tag answered with an ISO 15693 error code."""

    def __init__(self, uid: str, iso_code: int) -> None:
        self.uid = uid
        self.iso_code = iso_code
        text = ISO15693_ERRORS.get(iso_code, "manufacturer or reserved error")
        super().__init__(f"tag {uid} answered ISO 15693 error 0x{iso_code:02X}: {text}")


class TagCommunicationError(TagOperationError):
    """Talking to the tag kept failing on the air (CRC errors, collisions, write errors)."""


class AfiNotConfirmed(TagOperationError):
    """The AFI never read back as written: the tag's security state is not what we wanted."""

    def __init__(self, uid: str, afi: int, last_read: int | None, attempts: int) -> None:
        self.uid, self.afi, self.last_read, self.attempts = uid, afi, last_read, attempts
        seen = "could not be read back" if last_read is None else f"read back 0x{last_read:02X}"
        super().__init__(f"AFI 0x{afi:02X} did not stick on tag {uid} after {attempts} "
                         f"attempt(s): {seen}")


# --- configs -------------------------------------------------------------------------------

class ReaderConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The device's key in the station's status (`devices: {"rfid": "ok"}`).
    name: str = Field(default="rfid", pattern=r"^[a-z0-9_-]{1,32}$")
    # How often `write_afi` writes and reads back before it gives up.
    afi_write_attempts: int = Field(default=3, ge=1, le=10)
    # Larger reads are split; readers limit a reply to about 128 data bytes.
    max_blocks_per_read: int = Field(default=32, ge=1, le=64)


class SerialReaderConfig(ReaderConfigBase):
    # A /dev/serial/by-id/... path (stable across replugs) or a pyserial URL.
    port: str = Field(min_length=1)
    baudrate: int = Field(default=115200, gt=0)
    # Seconds to wait for a reply; an inventory of a tall stack waits `inventory_timeout`.
    timeout: float = Field(default=0.5, gt=0, le=30)
    inventory_timeout: float = Field(default=2.0, gt=0, le=60)
    # Extra attempts after a timeout, a corrupted reply or an RF error.
    retries: int = Field(default=2, ge=0, le=10)
    # Reopening an unplugged reader: first wait, doubled after each failure up to the max.
    reconnect_initial: float = Field(default=0.5, gt=0, le=60)
    reconnect_max: float = Field(default=10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _backoff_order(self) -> SerialReaderConfig:
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must not be less than reconnect_initial")
        return self


# --- the interface -------------------------------------------------------------------------

class RfidReader(abc.ABC):
    """An HF reader of ISO 15693 tags. Calls block until the reader answered; they are
    serialized, so a gate's polling thread and a kiosk's AFI write may share a reader."""

    type_key: ClassVar[str]
    config_model: ClassVar[type[ReaderConfigBase]]

    name: str
    afi_write_attempts: int

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: Any) -> RfidReader: ...

    @abc.abstractmethod
    def open(self) -> None:
        """Start using the reader. A reader that is not plugged in does not raise: its
        state is "fault" and it is opened as soon as it appears (see `check`)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the reader; its state becomes "absent". Safe to call twice."""

    @property
    @abc.abstractmethod
    def state(self) -> DeviceState: ...

    @abc.abstractmethod
    def check(self) -> DeviceState:
        """Reconnect a faulty reader if it is due, and return the state. Status loops
        call this; every operation does it too."""

    @abc.abstractmethod
    def inventory(self) -> list[TagRead]:
        """Every tag in the field, each once; an empty list when there is none."""

    @abc.abstractmethod
    def read_blocks(self, uid: str, first: int, count: int) -> bytes:
        """`count` blocks from block `first`, in tag memory order. A tag that leaves
        during the read raises `TagNotFound`, never returns part of the data."""

    @abc.abstractmethod
    def system_info(self, uid: str) -> TagInfo: ...

    @abc.abstractmethod
    def _write_afi_once(self, uid: str, afi: int) -> None:
        """One Write AFI command, unverified."""

    def read_afi(self, uid: str) -> int:
        return self.system_info(uid).afi

    def write_afi(self, uid: str, afi: int) -> None:
        """Write the AFI, read it back, and try again until it sticks.

        Raises `AfiNotConfirmed` when it never reads back as written. A `ReaderFault`
        (reader unplugged or silent) or a `ReaderStatusError` (the reader cannot write
        AFIs) ends the attempts at once. After any exception the tag's AFI is unknown: it
        may have been written even though the reply was lost.
        """
        uid = normalize_uid(uid)
        check_byte(afi, "AFI")
        last_read: int | None = None
        last_error: TagOperationError | None = None
        for attempt in range(1, self.afi_write_attempts + 1):
            try:
                self._write_afi_once(uid, afi)
            except TagOperationError as exc:
                # The write may still have reached the tag; the read-back decides.
                last_error = exc
                log.info("reader %s: writing AFI on %s (attempt %d): %s",
                         self.name, uid, attempt, exc)
            try:
                last_read = self.read_afi(uid)
            except TagOperationError as exc:
                last_error = exc
                log.info("reader %s: reading back AFI of %s (attempt %d): %s",
                         self.name, uid, attempt, exc)
                continue
            if last_read == afi:
                return
            log.warning("reader %s: AFI of %s reads 0x%02X after writing 0x%02X (attempt %d)",
                        self.name, uid, last_read, afi, attempt)
        raise AfiNotConfirmed(uid, afi, last_read, self.afi_write_attempts) from last_error


# --- what serial readers share -----------------------------------------------------------

class SerialRfidReader(RfidReader):
    """A reader behind a `Transport`: one exchange at a time, and hot-plug.

    A `TransportError` (the port vanished) closes the port, sets "fault" and schedules a
    reopen after `reconnect_initial` seconds, doubling after each failed attempt up to
    `reconnect_max`. Reopening happens in `check()` or at the next operation once due.
    """

    def __init__(self, config: SerialReaderConfig, transport: Transport, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = config.name
        self.afi_write_attempts = config.afi_write_attempts
        self._config = config
        self._transport = transport
        self._clock = clock
        self._lock = threading.RLock()
        self._state: DeviceState = "absent"
        # Why the reader is at fault, for the station's device.fault event and the doctor.
        self.last_error = ""
        self._wanted = False             # between open() and close()
        self._next_attempt = 0.0
        self._backoff = config.reconnect_initial

    # lifecycle
    @property
    def state(self) -> DeviceState:
        return self._state

    def open(self) -> None:
        with self._lock:
            self._wanted = True
            self._next_attempt = self._clock()
            self._backoff = self._config.reconnect_initial
            self._connect_if_due()

    def close(self) -> None:
        with self._lock:
            self._wanted = False
            self._transport.close()
            self._state = "absent"

    def check(self) -> DeviceState:
        with self._lock:
            if self._wanted and not self._transport.is_open:
                self._connect_if_due()
            return self._state

    def _on_connect(self) -> None:
        """Speak to the reader once its port is open (a handshake); raise `RfidError`
        when it is not the reader expected. Nothing to do by default."""

    def _connect_if_due(self) -> bool:
        now = self._clock()
        if now < self._next_attempt:
            return False
        try:
            self._transport.open()
            self._on_connect()
        except (TransportError, RfidError) as exc:
            self._transport.close()
            self._fault(f"cannot open {self._transport.description}: {exc}")
            self._schedule_reconnect()
            return False
        self._backoff = self._config.reconnect_initial
        self._healthy()
        return True

    def _schedule_reconnect(self) -> None:
        # Waits after consecutive failures: initial, twice that, ... up to the max.
        self._next_attempt = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2, self._config.reconnect_max)

    def _fault(self, why: str) -> None:
        if self._state != "fault":  # one log line per fault, not one per retry
            log.error("reader %s: fault: %s", self.name, why)
        self._state = "fault"
        self.last_error = why

    def _healthy(self) -> None:
        if self._state == "fault":
            log.info("reader %s: ok again", self.name)
        self._state = "ok"
        self.last_error = ""

    @contextlib.contextmanager
    def _session(self) -> Iterator[Transport]:
        """One command's exchange: the port open, one caller at a time, faults noticed."""
        with self._lock:
            if not self._wanted:
                raise ReaderUnavailable(f"reader {self.name} is not open")
            if not self._transport.is_open and not self._connect_if_due():
                wait = max(0.0, self._next_attempt - self._clock())
                raise ReaderUnavailable(f"reader {self.name} is not connected "
                                        f"({self._transport.description}); "
                                        f"next try in {wait:.1f} s")
            try:
                yield self._transport
            except TransportError as exc:
                self._transport.close()
                self._fault(str(exc))
                self._schedule_reconnect()
                raise ReaderUnavailable(f"reader {self.name}: {exc}") from exc
            except ReaderFault as exc:
                self._fault(str(exc))
                raise
            except RfidError:
                self._healthy()  # the reader answered: the trouble was the tag or the request
                raise
            self._healthy()


# --- registry -------------------------------------------------------------------------------

# Imported when the registry is first looked at, so each registers itself; the order is
# the order of the types in error messages.
BUILTIN_DRIVERS = ("drivers.rfid.feig", "drivers.rfid.lineproto", "drivers.rfid.simulated")

RFID_READERS: Registry[RfidReader] = Registry("RFID reader", builtin=BUILTIN_DRIVERS)
register_reader = RFID_READERS.register
load_builtin_drivers = RFID_READERS.load_builtins


def reader_config_type() -> Any:
    """The `[devices.rfid]` table's type: each registered driver's config, picked by `type`."""
    return RFID_READERS.config_type()


def parse_reader_config(data: Any) -> ReaderConfigBase:
    return RFID_READERS.parse(data)  # type: ignore[no-any-return]


def create_reader(config: ReaderConfigBase) -> RfidReader:
    return RFID_READERS.create(config)
