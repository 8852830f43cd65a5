"""The thuvien RFID line protocol, version 1: a DIY bridge reader speaking ASCII lines.

A bridge is a microcontroller with an ISO 15693 front end (a PN5180, a CR95HF, a
TRF7970A...) on USB-serial. The protocol, for the firmware's author, is specified in
docs/rfid-line-protocol.md; in short, one command line, one reply:

    VERSION                   -> VERSION 1 <free text>
    PING <token>              -> PONG <token>
    INV                       -> TAG <uid> <dsfid> <afi|-->  (once per tag), then END <count>
    SYS <uid>                 -> SYS <uid> <dsfid> <afi> <blocks> <block size> <ic ref|-->
    RD <uid> <first> <count>  -> DATA <hex>
    WAFI <uid> <afi>          -> OK
    any command               -> ERR <code> <text>   (NOTAG, RF, TAG, WRITE, SYNTAX, RANGE, HW)

Lines end with LF (CR LF is accepted); lines starting with `#` are the firmware's comments
and are ignored, as are blank lines. After a timeout or a line that makes no sense the
host sends `PING <token>` and drops every line until `PONG <token>`, so a late reply can
never be taken for the answer to the next command.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Literal, TypeVar

from pydantic import Field

from drivers.rfid.reader import (
    ReaderFault,
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

log = logging.getLogger("thuvien.drivers.rfid.lineproto")

PROTOCOL_VERSION = 1
MAX_LINE = 300           # characters before the LF; a 128-byte DATA line is 261
MAX_SKIPPED_LINES = 64   # comment lines tolerated before a reply
MAX_TAGS = 1000          # TAG lines in one inventory

T = TypeVar("T")


class _NoReply(ReaderNotResponding):
    pass


class _Garbled(ReaderProtocolError):
    pass


class _Retry(Exception):
    """A tag-level failure worth another attempt; `final` is raised when attempts run out."""

    def __init__(self, final: RfidError) -> None:
        super().__init__(str(final))
        self.final = final


def _byte(word: str, what: str) -> int:
    try:
        value = int(word, 16)
    except ValueError:
        raise _Garbled(f"{what} is not hex: {word!r}") from None
    if len(word) != 2:
        raise _Garbled(f"{what} must be two hex digits: {word!r}")
    return value


def _count(word: str, what: str) -> int:
    if not word.isdigit():
        raise _Garbled(f"{what} is not a decimal number: {word!r}")
    return int(word)


def _uid(word: str) -> str:
    try:
        uid = normalize_uid(word)
    except ValueError as exc:
        raise _Garbled(str(exc)) from None
    if not uid.startswith("E0"):
        raise _Garbled(f"UID {uid} does not start with E0: does the bridge send it least "
                       f"significant byte first?")
    return uid


class LineReaderConfig(SerialReaderConfig):
    type: Literal["line"] = "line"
    baudrate: int = Field(default=115200, gt=0)
    # Many boards reboot when the port opens (Arduino's auto-reset on DTR): their first
    # answer may take this long.
    boot_timeout: float = Field(default=3.0, gt=0, le=30)


@register_reader
class LineReader(SerialRfidReader):
    """A DIY bridge reader speaking the thuvien line protocol over (USB-)serial."""

    type_key = "line"
    config_model = LineReaderConfig

    def __init__(self, config: LineReaderConfig, transport: Transport | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if transport is None:
            transport = SerialTransport(config.port, baudrate=config.baudrate)
        super().__init__(config, transport, clock=clock)
        self._cfg = config
        self._tokens = itertools.count(1)
        self.firmware: str | None = None  # the free text of the bridge's VERSION line

    @classmethod
    def from_config(cls, config: LineReaderConfig) -> LineReader:
        return cls(config)

    # lines
    def _send(self, port: Transport, line: str) -> None:
        log.debug("reader %s <- %s", self.name, line)
        port.write(line.encode("ascii") + b"\n")

    def _next_line(self, port: Transport, timeout: float) -> str:
        """The next meaningful line: comments and blank lines are skipped."""
        for _ in range(MAX_SKIPPED_LINES):
            raw = port.read_line(timeout, MAX_LINE + 2)
            if not raw:
                raise _NoReply(f"no reply within {timeout} s")
            if not raw.endswith(b"\n"):
                raise _Garbled(f"line cut short or too long: {raw[:80]!r}")
            try:
                text = raw.decode("ascii").strip()
            except UnicodeDecodeError:
                raise _Garbled(f"a line that is not ASCII: {raw[:80]!r}") from None
            if text and not text.startswith("#"):
                log.debug("reader %s -> %s", self.name, text)
                return text
            if text:
                log.debug("reader %s says %s", self.name, text)
        raise _Garbled(f"more than {MAX_SKIPPED_LINES} comment lines and no reply")

    def _await_version(self, port: Transport, timeout: float) -> list[str] | None:
        for _ in range(MAX_SKIPPED_LINES):  # a booting board may print a banner or noise first
            try:
                words = self._next_line(port, timeout).split(maxsplit=2)
            except _Garbled:
                continue
            except _NoReply:
                return None
            if words[0] == "VERSION":
                return words
        return None

    def _on_connect(self) -> None:
        port = self._transport
        port.discard_input()
        self.firmware = None
        for attempt in range(self._cfg.retries + 1):
            self._send(port, "VERSION")
            words = self._await_version(
                port, self._cfg.boot_timeout if attempt == 0 else self._cfg.timeout)
            if words is None:
                continue
            if len(words) < 2 or not words[1].isdigit():
                raise ReaderProtocolError(f"reader {self.name}: not a VERSION line: "
                                          f"{' '.join(words)!r}")
            if int(words[1]) != PROTOCOL_VERSION:
                raise ReaderProtocolError(f"reader {self.name} speaks line protocol version "
                                          f"{words[1]}; this driver speaks {PROTOCOL_VERSION}")
            self.firmware = words[2] if len(words) > 2 else ""
            log.info("reader %s: bridge %r, line protocol %d", self.name, self.firmware,
                     PROTOCOL_VERSION)
            return
        raise ReaderNotResponding(f"reader {self.name}: no VERSION answer from the bridge on "
                                  f"{port.description}")

    def _resync(self, port: Transport) -> None:
        """Drop every late or stray line: PING with a fresh token, read until its PONG."""
        token = str(next(self._tokens))
        port.discard_input()
        self._send(port, f"PING {token}")
        for _ in range(MAX_SKIPPED_LINES):
            try:
                line = self._next_line(port, self._cfg.timeout)
            except _Garbled:
                continue
            except _NoReply:
                raise ReaderNotResponding(f"reader {self.name}: no answer to PING") from None
            if line == f"PONG {token}":
                return
        raise ReaderProtocolError(f"reader {self.name}: no PONG {token} among its replies")

    def _error(self, line: str, uid: str | None) -> RfidError | _Retry:
        words = line.split(maxsplit=2)
        code = words[1] if len(words) > 1 else "?"
        text = words[2] if len(words) > 2 else ""
        who = f"tag {uid}" if uid else "inventory"
        if code == "NOTAG" and uid is not None:
            return _Retry(TagNotFound(uid))
        if code == "RF":
            return _Retry(TagCommunicationError(f"{who}: RF error: {text}"))
        if code == "TAG" and uid is not None:
            iso = text.split(maxsplit=1)[0] if text else ""
            try:
                return TagError(uid, int(iso, 16))
            except ValueError:
                return TagError(uid, 0x0F)
        if code == "WRITE":
            return TagCommunicationError(f"{who}: not written: {text}")
        if code == "HW":
            return ReaderFault(f"reader {self.name} reports a hardware fault: {text}")
        return ReaderStatusError(code, text)

    def _transact(self, port: Transport, request: str, parse: Callable[[Transport, str], T], *,
                  uid: str | None = None, timeout: float | None = None) -> T:
        """Send one command and parse its reply; timeouts and garbled lines are resent
        after a resync, RF errors and a silent tag are resent as they are."""
        wait = timeout or self._cfg.timeout
        attempts = self._cfg.retries + 1
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            if isinstance(last, (_NoReply, _Garbled)):
                self._resync(port)
            port.discard_input()
            self._send(port, request)
            try:
                first = self._next_line(port, wait)
                if first.split(maxsplit=1)[0] == "ERR":
                    raise self._error(first, uid)
                return parse(port, first)
            except (_NoReply, _Garbled, _Retry) as exc:
                last = exc
                log.debug("reader %s: %s: %s (attempt %d of %d)", self.name, request, exc,
                          attempt, attempts)
        if isinstance(last, _Retry):
            raise last.final
        if isinstance(last, _NoReply):
            raise ReaderNotResponding(f"reader {self.name} did not answer {request!r} "
                                      f"({attempts} attempt(s))") from last
        raise ReaderProtocolError(f"reader {self.name}: no valid reply to {request!r} in "
                                  f"{attempts} attempt(s): {last}") from last

    # the RfidReader interface
    def inventory(self) -> list[TagRead]:
        def parse(port: Transport, line: str) -> list[TagRead]:
            found: dict[str, TagRead] = {}
            now = self._clock()
            for lines in range(MAX_TAGS + 1):
                words = line.split()
                if words[0] == "END" and len(words) == 2:
                    if _count(words[1], "END count") != lines:
                        raise _Garbled(f"END says {words[1]} tags after {lines} TAG line(s)")
                    return list(found.values())
                if words[0] != "TAG" or len(words) != 4:
                    raise _Garbled(f"unexpected line in an inventory: {line!r}")
                uid = _uid(words[1])
                afi = None if words[3] == "--" else _byte(words[3], "AFI")
                found.setdefault(uid, TagRead(uid=uid, dsfid=_byte(words[2], "DSFID"), afi=afi,
                                              at=now))
                line = self._next_line(port, self._cfg.inventory_timeout)
            raise _Garbled(f"more than {MAX_TAGS} TAG lines")

        with self._session() as port:
            return self._transact(port, "INV", parse, timeout=self._cfg.inventory_timeout)

    def read_blocks(self, uid: str, first: int, count: int) -> bytes:
        uid = normalize_uid(uid)
        check_blocks(first, count)

        def parser(blocks: int) -> Callable[[Transport, str], bytes]:
            def parse(port: Transport, line: str) -> bytes:
                words = line.split()
                if words[0] != "DATA" or len(words) != 2:
                    raise _Garbled(f"expected DATA, got {line!r}")
                try:
                    data = bytes.fromhex(words[1])
                except ValueError:
                    raise _Garbled(f"DATA is not hex: {words[1][:40]!r}") from None
                if not data or len(data) % blocks or len(data) // blocks > 32:
                    raise _Garbled(f"{len(data)} bytes of DATA for {blocks} block(s)")
                return data
            return parse

        step = self._cfg.max_blocks_per_read
        data = bytearray()
        with self._session() as port:
            for start in range(first, first + count, step):
                blocks = min(step, first + count - start)
                data += self._transact(port, f"RD {uid} {start} {blocks}", parser(blocks), uid=uid)
        return bytes(data)

    def system_info(self, uid: str) -> TagInfo:
        uid = normalize_uid(uid)

        def parse(port: Transport, line: str) -> TagInfo:
            words = line.split()
            if words[0] != "SYS" or len(words) != 7:
                raise _Garbled(f"expected SYS, got {line!r}")
            if _uid(words[1]) != uid:  # a late answer about another tag
                raise _Garbled(f"SYS answered for tag {words[1]}, not {uid}")
            return TagInfo(uid=uid, dsfid=_byte(words[2], "DSFID"), afi=_byte(words[3], "AFI"),
                           block_count=_count(words[4], "blocks"),
                           block_size=_count(words[5], "block size"),
                           ic_ref=None if words[6] == "--" else _byte(words[6], "IC reference"))

        with self._session() as port:
            return self._transact(port, f"SYS {uid}", parse, uid=uid)

    def _write_afi_once(self, uid: str, afi: int) -> None:
        uid = normalize_uid(uid)
        check_byte(afi, "AFI")

        def parse(port: Transport, line: str) -> None:
            if line != "OK":
                raise _Garbled(f"expected OK, got {line!r}")

        with self._session() as port:
            self._transact(port, f"WAFI {uid} {afi:02X}", parse, uid=uid)
