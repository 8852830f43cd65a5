"""The RFID reader's twin: a virtual pad of tags, the faults of real ones, and emulators.

`SimulatedPad` is the physical side: the tags lying on the pad (UID, DSFID, AFI and 28
blocks of 4 bytes each by default), placed and lifted by a test or the demo, and the
faults a real reader shows: unplugged and plugged back, replies corrupted on the wire,
junk before a reply, silence, RF errors, a tag lifted in the middle of a read.

Three ways to use it:
- `SimulatedRfidReader` (config `type = "simulated"`) drives the pad directly: the
  demo's reader and the fast twin in tests, with the same retries and errors as the
  drivers of real readers.
- `FeigEmulator` and `LineBridgeEmulator` answer the bytes of the FEIG ISO Host protocol
  and of the line protocol from the pad; `EmulatedTransport` wires one to a driver, so the
  real drivers run end to end with no hardware (or over a pty, as a fake firmware).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.base import DeviceState
from drivers.rfid import feig
from drivers.rfid.reader import (
    ReaderConfigBase,
    ReaderNotResponding,
    ReaderProtocolError,
    ReaderUnavailable,
    RfidError,
    RfidReader,
    TagCommunicationError,
    TagError,
    TagInfo,
    TagNotFound,
    TagRead,
    check_blocks,
    check_byte,
    normalize_uid,
    register_reader,
)
from drivers.rfid.transport import Transport, TransportError

T = TypeVar("T")

DEFAULT_BLOCKS = 28      # an NXP ICODE SLIX: 28 blocks of 4 bytes of user memory
DEFAULT_BLOCK_SIZE = 4

# What can go wrong on one exchange with a reader:
#   crc      the reply is corrupted on the wire
#   junk     junk bytes arrive before the reply
#   silence  no reply at all
#   rf       the reader reports an RF error talking to the tags
Fault = Literal["crc", "junk", "silence", "rf"]


class PadError(Exception):
    """What the air interface did instead of answering."""


class TagAbsent(PadError):
    pass


class BlockOutOfRange(PadError):
    pass


@dataclass
class SimulatedTag:
    uid: str
    dsfid: int = 0x00
    afi: int = 0x07
    memory: bytearray = field(
        default_factory=lambda: bytearray(DEFAULT_BLOCKS * DEFAULT_BLOCK_SIZE))
    block_size: int = DEFAULT_BLOCK_SIZE
    ic_ref: int = 0x01
    # False: Write AFI is acknowledged but never programmed (a marginal tag at the edge).
    afi_sticks: bool = True

    def __post_init__(self) -> None:
        self.uid = normalize_uid(self.uid)
        check_byte(self.dsfid, "DSFID")
        check_byte(self.afi, "AFI")
        self.memory = bytearray(self.memory)
        if not 1 <= self.block_size <= 32 or len(self.memory) % self.block_size:
            raise ValueError(f"memory of {len(self.memory)} bytes is not whole blocks of "
                             f"{self.block_size}")

    @property
    def block_count(self) -> int:
        return len(self.memory) // self.block_size


class SimulatedPad:
    """Tags on a reader's pad, and the faults to come. Safe to use from several threads."""

    def __init__(self, tags: Iterable[SimulatedTag] = ()) -> None:
        self._lock = threading.Lock()
        self._tags: dict[str, SimulatedTag] = {}
        self._faults: deque[Fault] = deque()
        self._leaving: dict[str, int] = {}
        self.plugged = True
        self.place(*tags)

    # the scene
    def place(self, *tags: SimulatedTag) -> None:
        with self._lock:
            for tag in tags:
                self._tags[tag.uid] = tag

    def remove(self, uid: str) -> SimulatedTag | None:
        with self._lock:
            return self._tags.pop(normalize_uid(uid), None)

    def clear(self) -> None:
        with self._lock:
            self._tags.clear()

    def tag(self, uid: str) -> SimulatedTag:
        with self._lock:
            return self._tags[normalize_uid(uid)]

    @property
    def uids(self) -> list[str]:
        with self._lock:
            return list(self._tags)

    # faults
    def unplug(self) -> None:
        self.plugged = False

    def replug(self) -> None:
        self.plugged = True

    def inject(self, fault: Fault, times: int = 1) -> None:
        """The next `times` exchanges with the reader suffer `fault`."""
        with self._lock:
            self._faults.extend([fault] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def leave_after(self, uid: str, operations: int) -> None:
        """The tag is lifted off the pad after `operations` more commands addressed to it."""
        with self._lock:
            self._leaving[normalize_uid(uid)] = operations

    def next_fault(self) -> Fault | None:
        """The fault of the exchange starting now, if any (each fault hits one exchange)."""
        with self._lock:
            return self._faults.popleft() if self._faults else None

    # the air interface
    def _addressed(self, uid: str) -> SimulatedTag:
        # with self._lock held
        remaining = self._leaving.get(uid)
        if remaining == 0:
            del self._leaving[uid]
            self._tags.pop(uid, None)
        elif remaining is not None:
            self._leaving[uid] = remaining - 1
        tag = self._tags.get(uid)
        if tag is None:
            raise TagAbsent(uid)
        return tag

    def inventory(self) -> list[SimulatedTag]:
        with self._lock:
            return [copy.deepcopy(tag) for tag in self._tags.values()]

    def read(self, uid: str, first: int, count: int) -> tuple[int, bytes]:
        """(block size, the blocks' bytes in memory order)."""
        with self._lock:
            tag = self._addressed(uid)
            if first + count > tag.block_count:
                raise BlockOutOfRange(f"blocks {first}..{first + count - 1} of {tag.block_count}")
            size = tag.block_size
            return size, bytes(tag.memory[first * size:(first + count) * size])

    def system_info(self, uid: str) -> SimulatedTag:
        with self._lock:
            return copy.deepcopy(self._addressed(uid))

    def write_afi(self, uid: str, afi: int) -> None:
        with self._lock:
            tag = self._addressed(uid)
            if tag.afi_sticks:
                tag.afi = afi


# --- the simulated reader ---------------------------------------------------------------

class SimulatedTagConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str
    dsfid: int = Field(default=0x00, ge=0, le=255)
    afi: int = Field(default=0x07, ge=0, le=255)
    # The first bytes of user memory, in hex; the rest of the 28 blocks are zero.
    data: str = ""

    @field_validator("uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        return normalize_uid(value)

    @field_validator("data")
    @classmethod
    def _data(cls, value: str) -> str:
        if len(bytes.fromhex(value)) > DEFAULT_BLOCKS * DEFAULT_BLOCK_SIZE:
            raise ValueError(f"more than {DEFAULT_BLOCKS * DEFAULT_BLOCK_SIZE} bytes")
        return value

    def tag(self) -> SimulatedTag:
        memory = bytearray(DEFAULT_BLOCKS * DEFAULT_BLOCK_SIZE)
        data = bytes.fromhex(self.data)
        memory[:len(data)] = data
        return SimulatedTag(uid=self.uid, dsfid=self.dsfid, afi=self.afi, memory=memory)


class SimulatedReaderConfig(ReaderConfigBase):
    type: Literal["simulated"] = "simulated"
    # Lets a demo or test start a station with a missing reader (plugged in later).
    plugged: bool = True
    retries: int = Field(default=2, ge=0, le=10)
    tags: list[SimulatedTagConfig] = Field(default_factory=list)
    # A Unix socket where `thuvien sim` lays tags on this pad (drivers/rfid/padcontrol.py):
    # how the demo walks a book through a simulated gate.
    control: str | None = None


_FAULT_ERRORS: dict[Fault, Callable[[str], RfidError]] = {
    "crc": lambda name: ReaderProtocolError(f"reader {name}: corrupted replies (simulated)"),
    "junk": lambda name: ReaderProtocolError(f"reader {name}: junk instead of replies (simulated)"),
    "silence": lambda name: ReaderNotResponding(f"reader {name} did not answer (simulated)"),
    "rf": lambda name: TagCommunicationError(f"reader {name}: RF errors (simulated)"),
}


@register_reader
class SimulatedRfidReader(RfidReader):
    """A reader made of a `SimulatedPad`: every fault injected on the pad is retried
    and reported as a real reader's driver would."""

    type_key = "simulated"
    config_model = SimulatedReaderConfig

    def __init__(self, pad: SimulatedPad | None = None, *, name: str = "rfid", retries: int = 2,
                 afi_write_attempts: int = 3, max_blocks_per_read: int = 32,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pad = pad if pad is not None else SimulatedPad()
        self.name = name
        self.afi_write_attempts = afi_write_attempts
        self._retries = retries
        self._step = max_blocks_per_read
        self._clock = clock
        self._lock = threading.RLock()
        self._open = False
        self._silent = False  # the last exchange got no valid reply: "fault" until one does

    @classmethod
    def from_config(cls, config: SimulatedReaderConfig) -> SimulatedRfidReader:
        pad = SimulatedPad(tag.tag() for tag in config.tags)
        pad.plugged = config.plugged
        reader = cls(pad, name=config.name, retries=config.retries,
                     afi_write_attempts=config.afi_write_attempts,
                     max_blocks_per_read=config.max_blocks_per_read)
        reader.control_path = config.control
        return reader

    control_path: str | None = None
    _control: object | None = None

    def open(self) -> None:
        self._open = True
        if self.control_path and self._control is None:
            from drivers.rfid.padcontrol import PadControlServer  # it imports this module

            self._control = PadControlServer(self.pad, self.control_path)

    def close(self) -> None:
        self._open = False
        control, self._control = self._control, None
        if control is not None:
            control.close()  # type: ignore[attr-defined]

    @property
    def state(self) -> DeviceState:
        if not self._open:
            return "absent"
        return "ok" if self.pad.plugged and not self._silent else "fault"

    def check(self) -> DeviceState:
        return self.state

    def _exchange(self, operation: Callable[[], T], uid: str | None = None) -> T:
        with self._lock:
            if not self._open:
                raise ReaderUnavailable(f"reader {self.name} is not open")
            error: RfidError | None = None
            for _ in range(self._retries + 1):
                if not self.pad.plugged:
                    raise ReaderUnavailable(f"reader {self.name} is unplugged (simulated)")
                fault = self.pad.next_fault()
                if fault is not None:
                    error = _FAULT_ERRORS[fault](self.name)
                    self._silent = fault != "rf"  # no valid reply: the reader looks faulty
                    continue
                self._silent = False
                try:
                    return operation()
                except TagAbsent:
                    error = TagNotFound(uid or "?")
                except BlockOutOfRange:
                    raise TagError(uid or "?", 0x10) from None
            assert error is not None
            raise error

    def inventory(self) -> list[TagRead]:
        now = self._clock()
        tags = self._exchange(self.pad.inventory)
        return [TagRead(uid=tag.uid, dsfid=tag.dsfid, afi=tag.afi, at=now) for tag in tags]

    def read_blocks(self, uid: str, first: int, count: int) -> bytes:
        uid = normalize_uid(uid)
        check_blocks(first, count)
        data = bytearray()
        for start in range(first, first + count, self._step):
            blocks = min(self._step, first + count - start)
            data += self._exchange(lambda: self.pad.read(uid, start, blocks)[1], uid)  # noqa: B023
        return bytes(data)

    def system_info(self, uid: str) -> TagInfo:
        uid = normalize_uid(uid)
        tag = self._exchange(lambda: self.pad.system_info(uid), uid)
        return TagInfo(uid=uid, dsfid=tag.dsfid, afi=tag.afi, block_size=tag.block_size,
                       block_count=tag.block_count, ic_ref=tag.ic_ref)

    def _write_afi_once(self, uid: str, afi: int) -> None:
        uid = normalize_uid(uid)
        check_byte(afi, "AFI")
        self._exchange(lambda: self.pad.write_afi(uid, afi), uid)


# --- byte-level emulators ---------------------------------------------------------------

JUNK = b"\x00\x13\xfe junk \x00"


class FeigEmulator:
    """A FEIG reader in ISO Host mode whose field is a `SimulatedPad`."""

    def __init__(self, pad: SimulatedPad, *, com_adr: int = 0x00,
                 block_byte_order: Literal["msb_first", "memory"] = "msb_first",
                 data_sets_per_reply: int = 24) -> None:
        self.pad = pad
        self.com_adr = com_adr
        self._reverse = block_byte_order == "msb_first"
        self._per_reply = data_sets_per_reply
        self._pending: list[SimulatedTag] = []  # inventory data sets not yet sent

    def take_requests(self, buffer: bytearray) -> list[bytes]:
        requests = []
        while buffer:
            if buffer[0] == feig.STX and len(buffer) < 3:
                break
            length = int.from_bytes(buffer[1:3], "big") if buffer[0] == feig.STX else buffer[0]
            if length < 5:
                buffer.clear()  # not a frame: the reader ignores the line noise
                break
            if len(buffer) < length:
                break
            requests.append(bytes(buffer[:length]))
            del buffer[:length]
        return requests

    def respond(self, request: bytes) -> bytes:
        try:
            frame = feig.decode_frame(request)
        except feig.FrameError:
            return b""  # a corrupted request gets no answer
        fault = self.pad.next_fault()
        if fault == "silence" or frame.com_adr not in (self.com_adr, feig.BROADCAST):
            return b""
        if fault == "rf":
            body = bytes([feig.RF_COMMUNICATION_ERROR])
        elif frame.command != feig.CMD_ISO15693 or len(frame.body) < 2:
            body = bytes([0x80])  # unknown command
        else:
            body = self._iso(frame.body)
        reply = feig.encode_frame(feig.Frame(self.com_adr, frame.command, body,
                                             advanced=len(body) + 5 > 0xFF))
        if fault == "crc":
            reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
        if fault == "junk":
            reply = JUNK + reply
        return reply

    def _iso(self, body: bytes) -> bytes:
        sub, mode = body[0], body[1]
        if sub == feig.INVENTORY:
            if not mode & feig.MODE_MORE:
                self._pending = self.pad.inventory()
            page, self._pending = self._pending[:self._per_reply], self._pending[self._per_reply:]
            if not page:
                return bytes([feig.NO_TRANSPONDER])
            status = feig.MORE_DATA if self._pending else feig.OK
            return bytes([status, len(page)]) + b"".join(
                bytes([0x03, tag.dsfid]) + bytes.fromhex(tag.uid) for tag in page)
        if mode & 0x07 != feig.MODE_ADDRESSED or len(body) < 10:
            return bytes([0x82])  # only the addressed mode is emulated
        uid = body[2:10].hex().upper()
        try:
            if sub == feig.READ_MULTIPLE_BLOCKS and len(body) == 12:
                size, data = self.pad.read(uid, body[10], body[11])
                out = bytearray([feig.OK, body[11], size])
                for offset in range(0, len(data), size):
                    block = data[offset:offset + size]
                    out += bytes([0x00]) + (block[::-1] if self._reverse else block)
                return bytes(out)
            if sub == feig.WRITE_AFI and len(body) == 11:
                self.pad.write_afi(uid, body[10])
                return bytes([feig.OK])
            if sub == feig.GET_SYSTEM_INFORMATION and len(body) == 10:
                tag = self.pad.system_info(uid)
                return bytes([feig.OK, tag.dsfid]) + bytes.fromhex(uid) + bytes(
                    [tag.afi, (tag.block_size - 1) & 0x1F, tag.block_count - 1, tag.ic_ref])
        except TagAbsent:
            return bytes([feig.NO_TRANSPONDER])
        except BlockOutOfRange:
            return bytes([feig.ISO15693_ERROR, 0x10])
        return bytes([0x81])  # length error


class LineBridgeEmulator:
    """A DIY bridge's firmware, line protocol version 1, whose field is a `SimulatedPad`."""

    def __init__(self, pad: SimulatedPad, *, version: str = "1 thuvien simulated bridge") -> None:
        self.pad = pad
        self.version = version

    def take_requests(self, buffer: bytearray) -> list[bytes]:
        requests = []
        while (end := buffer.find(b"\n")) >= 0:
            requests.append(bytes(buffer[:end + 1]))
            del buffer[:end + 1]
        return requests

    def respond(self, request: bytes) -> bytes:
        fault = self.pad.next_fault()
        if fault == "silence":
            return b""
        words = request.decode("ascii", "replace").split()
        if fault == "rf" and words and words[0] in ("INV", "SYS", "RD", "WAFI"):
            reply = "ERR RF injected RF error\n"
        else:
            reply = self._answer(words)
        data = reply.encode("ascii")
        if fault == "crc":
            data = b"\xff" + data[1:]
        if fault == "junk":
            data = JUNK + b"\n" + data
        return data

    def _answer(self, words: list[str]) -> str:
        if not words:
            return "ERR SYNTAX empty line\n"
        command, args = words[0].upper(), words[1:]
        try:
            if command == "VERSION" and not args:
                return f"VERSION {self.version}\n"
            if command == "PING" and len(args) == 1:
                return f"PONG {args[0]}\n"
            if command == "INV" and not args:
                tags = self.pad.inventory()
                lines = [f"TAG {tag.uid} {tag.dsfid:02X} {tag.afi:02X}\n" for tag in tags]
                return "".join(lines) + f"END {len(tags)}\n"
            if command == "SYS" and len(args) == 1:
                tag = self.pad.system_info(normalize_uid(args[0]))
                return (f"SYS {tag.uid} {tag.dsfid:02X} {tag.afi:02X} {tag.block_count} "
                        f"{tag.block_size} {tag.ic_ref:02X}\n")
            if command == "RD" and len(args) == 3:
                first, count = int(args[1]), int(args[2])
                if count < 1 or count > 32:
                    return "ERR RANGE count must be 1..32\n"
                _, data = self.pad.read(normalize_uid(args[0]), first, count)
                return f"DATA {data.hex().upper()}\n"
            if command == "WAFI" and len(args) == 2:
                self.pad.write_afi(normalize_uid(args[0]), int(args[1], 16))
                return "OK\n"
        except TagAbsent:
            return f"ERR NOTAG tag {args[0].upper()} did not answer\n"
        except BlockOutOfRange as exc:
            return f"ERR TAG 10 {exc}\n"
        except ValueError as exc:
            return f"ERR SYNTAX {exc}\n"
        return f"ERR SYNTAX unknown command {' '.join(words)[:40]}\n"


class EmulatedTransport(Transport):
    """A serial port with an emulated reader behind it; unplugging the pad unplugs it."""

    def __init__(self, device: FeigEmulator | LineBridgeEmulator, *,
                 description: str = "emulated") -> None:
        self.device = device
        self.description = description
        self._open = False
        self._outbox = bytearray()  # written, not yet a whole request
        self._inbox = bytearray()

    @property
    def is_open(self) -> bool:
        return self._open

    def _plugged(self) -> None:
        if not self.device.pad.plugged:
            self._open = False
            raise TransportError(f"{self.description}: no such device (unplugged)")

    def open(self) -> None:
        self._plugged()
        self._open = True

    def close(self) -> None:
        self._open = False
        self._outbox.clear()
        self._inbox.clear()

    def write(self, data: bytes) -> None:
        self._plugged()
        self._outbox += data
        for request in self.device.take_requests(self._outbox):
            self._inbox += self.device.respond(request)

    def read(self, size: int, timeout: float) -> bytes:
        self._plugged()
        chunk = bytes(self._inbox[:size])
        del self._inbox[:size]
        return chunk

    def read_line(self, timeout: float, max_size: int) -> bytes:
        self._plugged()
        end = self._inbox.find(b"\n")
        size = min(end + 1 if end >= 0 else len(self._inbox), max_size)
        return self.read(size, timeout)

    def discard_input(self) -> None:
        self._plugged()
        self._inbox.clear()
