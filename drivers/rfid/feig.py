"""FEIG OBID i-scan HF readers (ID ISC.MR101/PR101, MR200, LR200, MR102...) in ISO Host mode.

Sources: FEIG ELECTRONIC's public ("public (B)") system manuals.
- "OBID i-scan System-Manual ID ISC.MR/PR/PRH101", H60301-3e-ID-B,
  https://manualshive.com/en/manual/feig-electronic/obid-i-scan-id-isc-pr101/3908001
  (also https://www.easymanua.ls/feig-electronic/obid-i-scan-id-isc-pr101/manual):
  p. 17 protocol frame elements; §6.1 [0xB0] ISO 15693 host commands (p. 58);
  §6.1.1 Inventory (pp. 59-60); §6.1.4 Read Multiple Blocks (p. 63); §6.1.8 Write AFI
  (p. 69); §6.1.12 Get System Information (p. 73); ANNEX D index of status bytes (p. 121).
- "OBID i-scan System-Manual ID ISC.MR200", H40801-5e-ID-B: the same commands (pp. 87-103).
- "Manual ID ISC.MR102", H01113-4e-ID-B (2018), https://www.manualslib.com/manual/2509983/:
  §3.2 frames with the CRC's LSB first (p. 18); §3.3 CRC16 calculation algorithm (p. 20).
- "System-Manual ID ISC.LR200", H90692-16e-ID-B, §7.1 (p. 85): which statuses carry data.
- "System-Manual ID ISC.MR/PR/PRH100/101-A", H01000-5e-ID-B, CFG1 (p. 20), and
  "System-Manual ID ISC.M02.M8-B", H90400-0e-ID-B, CFG1 (p. 17): 38400 baud, 8 data bits,
  even parity, 1 stop bit by default; a reader addressed as 255 answers with its own address.
Checked against frames captured from a real reader and published in
bartek-Wlo/MEGA2560_as_AND_gate_for_RS232 (AND.cpp): the inventory request
`07 FF B0 01 00 1C 56` and the replies there decode with this module (see the tests).
The ISO 15693 error codes (status 0x95) are ISO/IEC 15693-3's, see `reader.ISO15693_ERRORS`.

Frames; multi-byte fields are sent most significant byte first, except the CRC:

    host -> reader   LEN COM-ADR CMD DATA...        CRC16-LSB CRC16-MSB
    reader -> host   LEN COM-ADR CMD STATUS DATA... CRC16-LSB CRC16-MSB
    advanced frame   0x02 ALEN-MSB ALEN-LSB COM-ADR CMD [STATUS] DATA... CRC16-LSB CRC16-MSB

LEN (ALEN) counts every byte of the frame. A reader answers a standard request with an
advanced frame when the reply would exceed 255 bytes. CRC16: polynomial 0x8408 (the
reflected x^16 + x^12 + x^5 + 1), preset 0xFFFF, no final XOR, over all bytes before it.
A reader ignores a corrupted request, so a lost request shows as a timeout: we send again.

ISO 15693 host commands are CMD 0xB0, DATA starting with a sub-command:

    0x01 Inventory               MODE (0x00 new, 0x80 more)  -> DATA-SETS, n x (TR-TYPE DSFID UID)
    0x23 Read Multiple Blocks    MODE UID DB-ADR DB-N        -> DB-N DB-SIZE, n x (SEC-STATUS DB)
    0x27 Write AFI               MODE UID AFI                -> (status only)
    0x2B Get System Information  MODE UID                    -> DSFID UID AFI MEM-SIZE IC-REF

MODE 0x01 addresses one tag by its UID. The reader runs the ISO 15693 anticollision
itself; when more data sets wait than fit in one reply it answers status 0x94 and the
host asks again with MODE 0x80. An RF communication error (0x83, e.g. collisions it could
not resolve) or a CRC error on the air (0x02) is retried.

The reader must be in ISO Host mode (not Scan, Buffered Read or Notification mode), with
ISO 15693 transponders enabled and ONT = 0 in CFG5 (Anticollision), so that every
inventory reports every tag in the field and not only those that arrived since the last.

Two points are inferred from the manuals' rule "data is sent MSB first" rather than seen
in a worked example (ANNEX I, "Examples for Read Data", was not available): the bytes of
each data block arrive highest address first (`block_byte_order = "msb_first"`, the
default, reverses them into memory order; "memory" passes them through), and MEM-SIZE is
(block size - 1, number of blocks - 1). Check both on a real reader: ISO 28560-3 data
whose CRC fails on every tag means the block order is the other one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from drivers.rfid.reader import (
    ReaderNotResponding,
    ReaderProtocolError,
    ReaderStatusError,
    RfidError,
    SerialReaderConfig,
    SerialRfidReader,
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
from drivers.rfid.transport import SerialTransport, Transport

log = logging.getLogger("thuvien.drivers.rfid.feig")

STX = 0x02              # first byte of an advanced frame
BROADCAST = 0xFF        # COM-ADR every reader answers to
CMD_ISO15693 = 0xB0     # ISO 15693 host commands
MAX_FRAME = 8192        # longer "frames" are junk: 800 tags of inventory fit in 8 KB

# sub-commands of 0xB0, and their MODE byte
INVENTORY = 0x01
READ_MULTIPLE_BLOCKS = 0x23
WRITE_AFI = 0x27
GET_SYSTEM_INFORMATION = 0x2B
MODE_NEW = 0x00
MODE_MORE = 0x80
MODE_ADDRESSED = 0x01

# statuses (ANNEX D)
OK = 0x00
NO_TRANSPONDER = 0x01
DATA_FALSE = 0x02
WRITE_ERROR = 0x03
ADDRESS_ERROR = 0x04
WRONG_TRANSPONDER_TYPE = 0x05
RF_COMMUNICATION_ERROR = 0x83
RF_WARNING = 0x84
MORE_DATA = 0x94
ISO15693_ERROR = 0x95

STATUS_TEXT = {
    OK: "OK",
    NO_TRANSPONDER: "no transponder in the field",
    DATA_FALSE: "CRC error in the data from the transponder",
    WRITE_ERROR: "write error (read-only area, tag too far, or noise)",
    ADDRESS_ERROR: "address error: blocks outside the transponder's memory",
    WRONG_TRANSPONDER_TYPE: "command not applicable to this transponder type",
    0x80: "unknown command",
    0x81: "length error",
    0x82: "command not available",
    RF_COMMUNICATION_ERROR: "RF communication error",
    RF_WARNING: "RF warning",
    0x93: "data buffer overflow",
    MORE_DATA: "more data",
    ISO15693_ERROR: "ISO 15693 error",
}

# Give up on an inventory that keeps saying "more data": 64 replies hold over 1,000 tags.
MAX_INVENTORY_REPLIES = 64
ISO15693_DATA_SET = 10  # TR-TYPE, DSFID, 8-byte UID


# --- the frame codec -----------------------------------------------------------------------

def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """FEIG's CRC16: polynomial 0x8408 (reflected), preset 0xFFFF, no final XOR."""
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


class FrameError(ReaderProtocolError):
    """Bytes that are not a valid frame: junk, cut short, or a CRC that does not match."""


class NoReply(ReaderNotResponding):
    """Not a single byte came back in time."""


@dataclass(frozen=True)
class Frame:
    """One frame without its length and CRC. `body` is DATA in a request and STATUS +
    DATA in a reply."""

    com_adr: int
    command: int
    body: bytes = b""
    advanced: bool = False

    @property
    def status(self) -> int:
        return self.body[0]

    @property
    def data(self) -> bytes:
        return self.body[1:]


def encode_frame(frame: Frame) -> bytes:
    if frame.advanced:
        length = 5 + len(frame.body) + 2
        if length > 0xFFFF:
            raise ValueError(f"a frame of {length} bytes does not fit an advanced frame")
        head = bytes([STX, length >> 8, length & 0xFF, frame.com_adr, frame.command])
    else:
        length = 3 + len(frame.body) + 2
        if length > 0xFF:
            raise ValueError(f"a frame of {length} bytes needs the advanced frame")
        head = bytes([length, frame.com_adr, frame.command])
    unsigned = head + frame.body
    crc = crc16(unsigned)
    return unsigned + bytes([crc & 0xFF, crc >> 8])


def decode_frame(raw: bytes) -> Frame:
    """One complete frame, its length and CRC checked."""
    advanced = raw[:1] == bytes([STX])
    head = 5 if advanced else 3
    if len(raw) < head + 2:
        raise FrameError(f"a frame needs at least {head + 2} bytes, got {len(raw)}: {raw.hex(' ')}")
    length = int.from_bytes(raw[1:3], "big") if advanced else raw[0]
    if length != len(raw):
        raise FrameError(f"frame length says {length} bytes, got {len(raw)}: {raw.hex(' ')}")
    expected = crc16(raw[:-2])
    got = raw[-2] | raw[-1] << 8
    if got != expected:
        raise FrameError(f"CRC error: frame carries 0x{got:04X}, its bytes give 0x{expected:04X} "
                         f"({raw.hex(' ')})")
    return Frame(com_adr=raw[head - 2], command=raw[head - 1], body=bytes(raw[head:-2]),
                 advanced=advanced)


def read_reply(port: Transport, *, command: int, com_adr: int, timeout: float,
               max_junk: int = 512) -> Frame:
    """The reader's reply to `command`, skipping junk before it.

    There is no start byte in a standard frame, so a candidate is any position where the
    length is plausible and the address and command match; a candidate whose CRC fails
    is a corrupted reply (`FrameError`), not junk to skip.
    """
    buf = bytearray()
    skipped = 0

    def fill(count: int) -> bool:
        if len(buf) < count:
            buf.extend(port.read(count - len(buf), timeout))
        return len(buf) >= count

    while True:
        if not fill(1):
            if skipped:
                raise FrameError(f"no reply frame, only {skipped} byte(s) of junk")
            raise NoReply(f"no reply within {timeout} s")
        advanced = buf[0] == STX
        head = 5 if advanced else 3
        if not fill(head):
            raise FrameError(f"reply cut short after {len(buf)} byte(s): {bytes(buf).hex(' ')}"
                             + (f" (after {skipped} byte(s) of junk)" if skipped else ""))
        length = int.from_bytes(buf[1:3], "big") if advanced else buf[0]
        address, echoed = buf[head - 2], buf[head - 1]
        if (head + 3 <= length <= MAX_FRAME and echoed == command
                and (com_adr == BROADCAST or address == com_adr)):
            if not fill(length):
                raise FrameError(f"reply cut short: {len(buf)} of {length} bytes: "
                                 f"{bytes(buf).hex(' ')}")
            return decode_frame(bytes(buf[:length]))
        del buf[0]
        skipped += 1
        if skipped > max_junk:
            raise FrameError(f"no reply frame in {skipped} bytes of junk")


# --- the driver ----------------------------------------------------------------------------

class FeigReaderConfig(SerialReaderConfig):
    type: Literal["feig"] = "feig"
    baudrate: int = Field(default=38400, gt=0)
    # The readers' serial data format is 8 data bits, 1 stop bit, even parity by default.
    parity: Literal["N", "E", "O"] = "E"
    # COM-ADR: 255 reaches the reader whatever its bus address (point-to-point lines).
    bus_address: int = Field(default=BROADCAST, ge=0, le=255)
    # Send advanced frames (the ID ISC.MR102 manual documents only those).
    advanced_frames: bool = False
    block_byte_order: Literal["msb_first", "memory"] = "msb_first"


@register_reader
class FeigReader(SerialRfidReader):
    """A FEIG HF reader on a serial or USB-serial port, speaking the ISO Host protocol."""

    type_key = "feig"
    config_model = FeigReaderConfig

    def __init__(self, config: FeigReaderConfig, transport: Transport | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if transport is None:
            transport = SerialTransport(config.port, baudrate=config.baudrate, parity=config.parity)
        super().__init__(config, transport, clock=clock)
        self._cfg = config

    @classmethod
    def from_config(cls, config: FeigReaderConfig) -> FeigReader:
        return cls(config)

    # exchanges
    def _transceive(self, port: Transport, body: bytes, timeout: float) -> Frame:
        """One request and its valid reply; resent after a timeout or a corrupted reply."""
        request = encode_frame(Frame(self._cfg.bus_address, CMD_ISO15693, body,
                                     advanced=self._cfg.advanced_frames))
        attempts = self._cfg.retries + 1
        last: RfidError | None = None
        for attempt in range(1, attempts + 1):
            port.discard_input()
            port.write(request)
            try:
                reply = read_reply(port, command=CMD_ISO15693, com_adr=self._cfg.bus_address,
                                   timeout=timeout)
            except (NoReply, FrameError) as exc:
                last = exc
                log.debug("reader %s: %s -> %s (attempt %d of %d)", self.name,
                          request.hex(" "), exc, attempt, attempts)
                continue
            log.debug("reader %s: %s -> status 0x%02X %s", self.name, request.hex(" "),
                      reply.status, reply.data.hex(" "))
            return reply
        if isinstance(last, NoReply):
            raise ReaderNotResponding(f"reader {self.name} did not answer "
                                      f"{request.hex(' ')} ({attempts} attempt(s))") from last
        raise ReaderProtocolError(f"reader {self.name}: no valid reply in {attempts} "
                                  f"attempt(s): {last}") from last

    def _iso(self, port: Transport, body: bytes, *, uid: str | None = None,
             timeout: float | None = None, accept: frozenset[int] = frozenset({OK})) -> Frame:
        """One ISO 15693 host command; RF errors, and a silent addressed tag, are retried."""
        attempts, attempt = self._cfg.retries + 1, 1
        while True:
            reply = self._transceive(port, body, timeout or self._cfg.timeout)
            status = reply.status
            if status in accept:
                return reply
            if status == RF_WARNING:  # the data is good; the antenna wants a look
                log.warning("reader %s: RF warning (check the antenna and its tuning)", self.name)
                return reply
            transient = status in (DATA_FALSE, RF_COMMUNICATION_ERROR) or (
                status == NO_TRANSPONDER and uid is not None)
            if not (transient and attempt < attempts):
                raise self._status_error(reply, uid)
            attempt += 1

    def _status_error(self, reply: Frame, uid: str | None) -> RfidError:
        status = reply.status
        text = STATUS_TEXT.get(status, "see the reader manual's index of status bytes")
        if status == ISO15693_ERROR and reply.data:
            return TagError(uid or "(inventory)", reply.data[0])
        if status == NO_TRANSPONDER and uid is not None:
            return TagNotFound(uid)
        if status in (DATA_FALSE, RF_COMMUNICATION_ERROR, WRITE_ERROR):
            return TagCommunicationError(f"tag {uid or '(inventory)'}: {text} (status "
                                         f"0x{status:02X}, {self._cfg.retries + 1} attempt(s))")
        return ReaderStatusError(status, text)

    # the RfidReader interface
    def inventory(self) -> list[TagRead]:
        found: dict[str, TagRead] = {}
        with self._session() as port:
            mode = MODE_NEW
            for _ in range(MAX_INVENTORY_REPLIES):
                reply = self._iso(port, bytes([INVENTORY, mode]),
                                  timeout=self._cfg.inventory_timeout,
                                  accept=frozenset({OK, MORE_DATA, NO_TRANSPONDER}))
                if reply.status == NO_TRANSPONDER:
                    break
                for tag in self._data_sets(reply.data):
                    found.setdefault(tag.uid, tag)
                if reply.status != MORE_DATA:
                    break
                mode = MODE_MORE
            else:
                raise ReaderProtocolError(f"reader {self.name} still had more inventory data "
                                          f"after {MAX_INVENTORY_REPLIES} replies")
        return list(found.values())

    def _data_sets(self, data: bytes) -> Iterator[TagRead]:
        if not data or len(data) != 1 + ISO15693_DATA_SET * data[0]:
            raise ReaderProtocolError(
                f"reader {self.name}: inventory data is not n x (TR-TYPE, DSFID, UID): "
                f"{data.hex(' ')}; enable only ISO 15693 transponders in the reader's "
                f"configuration")
        now = self._clock()
        for offset in range(1, len(data), ISO15693_DATA_SET):
            dsfid, uid = data[offset + 1], data[offset + 2:offset + ISO15693_DATA_SET]
            if uid[0] != 0xE0:  # every ISO 15693 UID starts with E0
                log.warning("reader %s: skipping a non-ISO 15693 transponder %s (type 0x%02X)",
                            self.name, uid.hex().upper(), data[offset])
                continue
            yield TagRead(uid=uid.hex().upper(), dsfid=dsfid, afi=None, at=now)

    def read_blocks(self, uid: str, first: int, count: int) -> bytes:
        uid = normalize_uid(uid)
        check_blocks(first, count)
        address = bytes.fromhex(uid)
        step = self._cfg.max_blocks_per_read
        data = bytearray()
        with self._session() as port:
            for start in range(first, first + count, step):
                blocks = min(step, first + count - start)
                reply = self._iso(port, bytes([READ_MULTIPLE_BLOCKS, MODE_ADDRESSED]) + address
                                  + bytes([start, blocks]), uid=uid)
                data += self._blocks(reply.data, blocks, uid)
        return bytes(data)

    def _blocks(self, data: bytes, blocks: int, uid: str) -> bytes:
        if len(data) < 2 or data[0] != blocks or data[1] == 0 \
                or len(data) != 2 + blocks * (1 + data[1]):
            raise ReaderProtocolError(f"reader {self.name}: Read Multiple Blocks of {blocks} "
                                      f"block(s) of tag {uid} answered {data.hex(' ')}")
        size = data[1]
        out = bytearray()
        for offset in range(2, len(data), 1 + size):
            block = data[offset + 1:offset + 1 + size]  # after the block's SEC-STATUS
            out += block[::-1] if self._cfg.block_byte_order == "msb_first" else block
        return bytes(out)

    def system_info(self, uid: str) -> TagInfo:
        uid = normalize_uid(uid)
        with self._session() as port:
            reply = self._iso(port, bytes([GET_SYSTEM_INFORMATION, MODE_ADDRESSED])
                              + bytes.fromhex(uid), uid=uid)
        data = reply.data
        if len(data) != 13:  # DSFID, UID (8), AFI, MEM-SIZE (2), IC-REF
            raise ReaderProtocolError(f"reader {self.name}: Get System Information of tag {uid} "
                                      f"answered {data.hex(' ')}")
        return TagInfo(uid=uid, dsfid=data[0], afi=data[9], block_size=(data[10] & 0x1F) + 1,
                       block_count=data[11] + 1, ic_ref=data[12])

    def _write_afi_once(self, uid: str, afi: int) -> None:
        uid = normalize_uid(uid)
        check_byte(afi, "AFI")
        with self._session() as port:
            self._iso(port, bytes([WRITE_AFI, MODE_ADDRESSED]) + bytes.fromhex(uid) + bytes([afi]),
                      uid=uid)
