"""ISO 28560-2 tag memory: library data elements encoded by the rules of ISO/IEC 15962.

This is the byte layer: data elements, the compaction schemes, the ISIL compaction, the
content parameter and set information formats. `drivers.rfid.tagdata` maps the elements
to a `TagData`. A 28560-2 tag (DSFID 0x06) holds a sequence of data elements

    precursor | [OID - 15] | [offset] | length | compacted data | [offset x filler]

ended by a 0x00 precursor (the terminator) or by the end of memory.

Where each layout fact comes from (public sources, read and not copied):

- Precursor: offset flag in bit 8, compaction code in bits 7-5, relative OID 1-14 in bits
  4-1; 15 means the next byte holds OID - 15, before the offset byte. The offset byte
  counts filler bytes after the data, so that an element (the primary item identifier,
  which may be locked) ends on a block boundary. DigitalPlatform/dp2 `DigitalPlatform.RFID`
  (LogicChip.cs: Element.Parse, Element.Compact, Precursor); the `iso15692` package in
  Hypernova-Oy/lainuri (programs/lainuri-serve/lib/iso15692: get_precursor, its tests);
  a real Finnish library tag in lainuri's lib/iso28560 tests (DSFID 0x06, AFI 0x07),
  whose first element `91 01 04 60 91 CE 43 80` is the integer 1620168259 padded with
  one 0x80 filler to 8 bytes; GOST R ISO 28560-2-2014
  (the Russian national adoption of ISO 28560-2:2014), Annex D, table D.5
  (https://ajdocs.ru/gsp/38726/39).
- Length of the compacted data: one byte below 128, else 7-bit groups with the high bit
  set on all but the last (iso15692 `encode_compacted_object_length` and its tests).
- Compaction codes: 0 application-defined, 1 integer, 2 numeric, 3 5-bit, 4 6-bit,
  5 7-bit, 6 octet string (ISO/IEC 8859-1), 7 UTF-8 (dp2 `CompactionScheme`, citing
  ISO 28560-2:2014 p. 17; iso15692 `compaction.py`). Integer: the big-endian binary value
  of 2-19 digits without a leading zero (GOST D.5: "123456789012" -> 1C BE 99 1A 14).
  Numeric: one digit per nibble, 0xF pads the last nibble. 5-bit: the low 5 bits of
  0x41-0x5F, zero pad. 6-bit: the low 6 bits of 0x20-0x5F, padded with the leading bits of
  0b100000 (the ISO/IEC 15962 Annex P example "AB12XY" -> 04 2C 72 61 98, as reproduced in
  the iso15692 tests). 7-bit: padded with 1 bits. The minimum lengths (integer and numeric
  2, 5-bit 3, 6-bit 4, 7-bit 8) are those of dp2 and iso15692. UTF-8 only when a character
  is outside ISO/IEC 8859-1 (ISO 28560-2:2011 clarification by its editor,
  http://biblstandard.dk/rfid/docs/clarification_28560-2.htm).
- Owner institution ISIL (OID 3), application-defined compaction: three character sets,
  5-bit upper case, 5-bit lower case, 4-bit digits, with latch and shift codes, padded with
  1 bits; latch when the next character is in the new set too, else shift (GOST R ISO
  28560-2-2014 Annex C, https://ajdocs.ru/gsp/38726/35 and /36, with the worked examples
  "DE-Heu1" -> 21 40 8E 16 BF 1F and "CH-000134-1"; the same tables in dp2 Compress.cs
  and in the Finnish "HelmetRfidTag" parser; the Finnish tag above encodes "FI-Mamk-M").
- Content parameter (OID 2): a bitmap of the elements present, its first bit standing for
  OID 3 (GOST D.5: D0 -> OIDs 3, 4, 6; the Finnish tag: A8 -> OIDs 3, 5, 7).
- Set information (OID 4): the number of parts followed by the ordinal part number, with
  the same number of digits (GOST D.5: 12 parts, part 3 -> the integer 1203).
- Relative OIDs 1-26 as listed by dp2 (from ISO/TS 28560-4:2014 p. 11) and the Finnish
  parser: 1 primary item identifier, 2 content parameter, 3 owner institution (ISIL),
  4 set information, 5 type of usage, ...
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

OID_PRIMARY_ITEM_ID = 1
OID_CONTENT_PARAMETER = 2
OID_OWNER_ISIL = 3
OID_SET_INFORMATION = 4
OID_TYPE_OF_USAGE = 5

TERMINATOR = 0x00
FILLER = 0x80  # the filler byte seen on the Finnish tag and in the 15962 Annex P example
MAX_OID = 15 + 0x7F
ISIL_MAX_LENGTH = 16  # ISO 15511


class EncodingError(ValueError):
    """Bytes that break the ISO/IEC 15962 rules, or a value those rules cannot encode."""


class Compaction(enum.IntEnum):
    APPLICATION = 0
    INTEGER = 1
    NUMERIC = 2
    FIVE_BIT = 3
    SIX_BIT = 4
    SEVEN_BIT = 5
    OCTETS = 6  # ISO/IEC 8859-1
    UTF8 = 7


@dataclass(frozen=True)
class DataElement:
    oid: int
    compaction: Compaction
    data: bytes  # as compacted on the tag


@dataclass(frozen=True)
class DataSet:
    elements: tuple[DataElement, ...]
    # Why parsing stopped before the terminator or the end of memory; None when it did not.
    problem: str | None = None


# --- elements ------------------------------------------------------------------------

def parse_data_set(memory: bytes) -> DataSet:
    """The data elements in tag memory, up to the terminator or the first broken element."""
    elements: list[DataElement] = []
    pos, end = 0, len(memory)

    def stop(problem: str) -> DataSet:
        return DataSet(tuple(elements), problem)

    while pos < end and memory[pos] != TERMINATOR:
        start, precursor = pos, memory[pos]
        pos += 1
        oid = precursor & 0x0F
        if oid == 0:
            return stop(f"byte {start}: precursor 0x{precursor:02X} names no data element")
        if oid == 15:
            if pos >= end:
                return stop(f"byte {start}: memory ends inside a data element (read more blocks?)")
            oid += memory[pos]
            pos += 1
        fillers = 0
        if precursor & 0x80:
            if pos >= end:
                return stop(f"byte {start}: memory ends inside a data element (read more blocks?)")
            fillers = memory[pos]
            pos += 1
        length, pos = _read_length(memory, pos)
        if length is None or pos + length > end:
            return stop(f"byte {start}: memory ends inside a data element (read more blocks?)")
        elements.append(DataElement(oid, Compaction((precursor >> 4) & 0x07),
                                    bytes(memory[pos:pos + length])))
        pos += length + fillers
        if pos > end:
            return stop(f"byte {start}: the filler of the data element runs past the memory read")
    return DataSet(tuple(elements))


def build_data_set(elements: Iterable[DataElement], *, block_size: int | None = 4) -> bytes:
    """Tag memory for the elements, terminated; with `block_size`, the first element is
    padded to end on a block boundary (so it can be locked) and the whole is zero-padded
    to whole blocks."""
    out = bytearray()
    for index, element in enumerate(elements):
        if not 1 <= element.oid <= MAX_OID:
            raise EncodingError(f"relative OID {element.oid} cannot be encoded")
        oid_bytes = bytes([element.oid - 15]) if element.oid >= 15 else b""
        body = _encode_length(len(element.data)) + element.data
        fillers = None
        if index == 0 and block_size:
            size = 1 + len(oid_bytes) + len(body)
            if size % block_size:
                fillers = -(size + 1) % block_size
        precursor = (0x80 if fillers is not None else 0) | (element.compaction << 4) \
            | min(element.oid, 15)
        out.append(precursor)
        out += oid_bytes
        if fillers is not None:
            out.append(fillers)
        out += body
        out += bytes([FILLER]) * (fillers or 0)
    out.append(TERMINATOR)
    if block_size:
        out += bytes(-len(out) % block_size)
    return bytes(out)


def _read_length(memory: bytes, pos: int) -> tuple[int | None, int]:
    length = 0
    for _ in range(3):
        if pos >= len(memory):
            return None, pos
        byte = memory[pos]
        pos += 1
        length = (length << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return length, pos
    return None, pos  # a length this long cannot fit a tag


def _encode_length(length: int) -> bytes:
    groups = [length & 0x7F]
    while length := length >> 7:
        groups.append(0x80 | (length & 0x7F))
    return bytes(reversed(groups))


# --- compaction ----------------------------------------------------------------------

def _in_range(text: str, low: int, high: int) -> bool:
    return all(low <= ord(ch) <= high for ch in text)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


_APPLIES = {
    Compaction.INTEGER: lambda t: _is_digits(t) and 2 <= len(t) <= 19 and t[0] != "0",
    Compaction.NUMERIC: lambda t: _is_digits(t) and len(t) >= 2,
    Compaction.FIVE_BIT: lambda t: len(t) >= 3 and _in_range(t, 0x41, 0x5F),
    Compaction.SIX_BIT: lambda t: len(t) >= 4 and _in_range(t, 0x20, 0x5F) and t[-1] != " ",
    Compaction.SEVEN_BIT: lambda t: len(t) >= 8 and _in_range(t, 0x00, 0x7E),
    Compaction.OCTETS: lambda t: _in_range(t, 0x00, 0xFF),
}


def compact(text: str) -> tuple[Compaction, bytes]:
    """The first scheme, in the standard's order, that can hold `text`: the shortest."""
    for scheme, applies in _APPLIES.items():
        if applies(text):
            return scheme, _COMPACT[scheme](text)
    try:
        return Compaction.UTF8, text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError(f"{text!r} is not encodable text") from exc


def decompact(scheme: Compaction | int, data: bytes) -> str:
    """The text held by `data` under a standard scheme (not the application-defined one)."""
    if scheme == Compaction.APPLICATION:
        raise EncodingError("application-defined compaction has no standard text form")
    return _DECOMPACT[Compaction(scheme)](bytes(data))


def _compact_integer(text: str) -> bytes:
    value = int(text)
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _decompact_integer(data: bytes) -> str:
    if not data:
        raise EncodingError("an integer needs at least one byte")
    return str(int.from_bytes(data, "big"))


def _compact_numeric(text: str) -> bytes:
    digits = text + ("F" if len(text) % 2 else "")
    return bytes.fromhex(digits)


def _decompact_numeric(data: bytes) -> str:
    digits = data.hex().upper()
    if digits.endswith("F"):
        digits = digits[:-1]
    if not _is_digits(digits):
        raise EncodingError(f"numeric compaction holds non-digits: {data.hex(' ')}")
    return digits


def _pack(codes: Iterable[tuple[int, int]], pad: str) -> bytes:
    """Codes of (value, width) bits, most significant first, padded to whole bytes with
    the leading bits of `pad`."""
    value = width = 0
    for code, bits in codes:
        value, width = (value << bits) | code, width + bits
    spare = -width % 8
    if spare:
        value, width = (value << spare) | int(pad[:spare], 2), width + spare
    return value.to_bytes(width // 8, "big")


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.value, self.left = int.from_bytes(data, "big"), 8 * len(data)

    def take(self, width: int) -> int:
        self.left -= width
        return (self.value >> self.left) & ((1 << width) - 1)

    def rest_is(self, pattern: str) -> bool:
        """Whether the bits left are the leading bits of `pattern`."""
        rest = format(self.value & ((1 << self.left) - 1), f"0{self.left}b") if self.left else ""
        return pattern.startswith(rest)


def _compact_chars(width: int, pad: str):
    mask = (1 << width) - 1
    return lambda text: _pack(((ord(ch) & mask, width) for ch in text), pad)


def _decompact_chars(width: int, pad: str, to_char):
    def decompact_(data: bytes) -> str:
        bits, out = _Bits(data), []
        while bits.left >= width:
            # Under a byte left that reads as padding is padding: the character it would
            # spell (code 0, a trailing space, DEL) is not allowed at the end.
            if bits.left < 8 and bits.rest_is(pad):
                break
            out.append(to_char(bits.take(width)))
        if not bits.rest_is(pad):
            raise EncodingError(f"bad padding after {width}-bit characters: {data.hex(' ')}")
        return "".join(out)
    return decompact_


def _five_bit_char(code: int) -> str:
    if code == 0:
        raise EncodingError("5-bit code 0 inside the data")
    return chr(0x40 | code)


_COMPACT = {
    Compaction.INTEGER: _compact_integer,
    Compaction.NUMERIC: _compact_numeric,
    Compaction.FIVE_BIT: _compact_chars(5, "00000000"),
    Compaction.SIX_BIT: _compact_chars(6, "10000000"),
    Compaction.SEVEN_BIT: _compact_chars(7, "11111111"),
    Compaction.OCTETS: lambda text: text.encode("latin-1"),
}


def _decode_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError(f"not UTF-8: {data.hex(' ')}") from exc


_DECOMPACT = {
    Compaction.INTEGER: _decompact_integer,
    Compaction.NUMERIC: _decompact_numeric,
    Compaction.FIVE_BIT: _decompact_chars(5, "00000000", _five_bit_char),
    Compaction.SIX_BIT: _decompact_chars(6, "10000000",
                                         lambda c: chr(c if c & 0x20 else c | 0x40)),
    Compaction.SEVEN_BIT: _decompact_chars(7, "11111111", chr),
    Compaction.OCTETS: lambda data: data.decode("latin-1"),
    Compaction.UTF8: _decode_utf8,
}


# --- ISIL compaction (ISO 28560-2 Annex C) --------------------------------------------

@dataclass(frozen=True)
class _CharSet:
    width: int
    codes: dict[str, int]
    latch: dict[str, int]  # target set name -> code
    shift: dict[str, int]


def _letters(first: str) -> dict[str, int]:
    return {chr(ord(first) + i): i + 1 for i in range(26)}


_SETS = {
    "upper": _CharSet(5, {"-": 0, **_letters("A"), ":": 27},
                      latch={"lower": 28, "digit": 30}, shift={"lower": 29, "digit": 31}),
    "lower": _CharSet(5, {"-": 0, **_letters("a"), "/": 27},
                      latch={"upper": 28, "digit": 30}, shift={"upper": 29, "digit": 31}),
    "digit": _CharSet(4, {**{str(d): d for d in range(10)}, "-": 10, ":": 11},
                      latch={"upper": 12, "lower": 14}, shift={"upper": 13, "lower": 15}),
}
ISIL_CHARS = frozenset().union(*(s.codes for s in _SETS.values()))


def compact_isil(isil: str) -> bytes:
    if not 1 <= len(isil) <= ISIL_MAX_LENGTH or not set(isil) <= ISIL_CHARS:
        raise EncodingError(f"{isil!r} is not an ISIL (1-16 of A-Z a-z 0-9 - / :)")
    codes: list[tuple[int, int]] = []
    mode = "upper"
    for index, ch in enumerate(isil):
        current = _SETS[mode]
        if ch in current.codes:
            codes.append((current.codes[ch], current.width))
            continue
        following = isil[index + 1] if index + 1 < len(isil) else None
        targets = [name for name, s in _SETS.items() if ch in s.codes]
        # Latch when the next character can stay in the new set too, else shift for one.
        target = next((t for t in targets if following in _SETS[t].codes), targets[0])
        if following is not None and following in _SETS[target].codes:
            codes.append((current.latch[target], current.width))
            mode = target
        else:
            codes.append((current.shift[target], current.width))
        codes.append((_SETS[target].codes[ch], _SETS[target].width))
    return _pack(codes, "11111111")


def decompact_isil(data: bytes) -> str:
    bits, out, mode = _Bits(bytes(data)), [], "upper"
    chars = {name: {code: ch for ch, code in s.codes.items()} for name, s in _SETS.items()}
    while bits.left >= _SETS[mode].width:
        current = _SETS[mode]
        code = bits.take(current.width)
        if code in chars[mode]:
            out.append(chars[mode][code])
            continue
        latch = {c: t for t, c in current.latch.items()}
        if code in latch:
            mode = latch[code]
            continue
        target = {c: t for t, c in current.shift.items()}[code]
        if bits.left < _SETS[target].width:
            # A shift that is all ones with nothing after it is the padding.
            if code == (1 << current.width) - 1 and bits.rest_is("1" * 8):
                return "".join(out)
            raise EncodingError(f"ISIL ends after a shift: {bytes(data).hex(' ')}")
        shifted = bits.take(_SETS[target].width)
        if shifted not in chars[target]:
            raise EncodingError(f"ISIL has a control code after a shift: {bytes(data).hex(' ')}")
        out.append(chars[target][shifted])
    if not bits.rest_is("1" * 8):
        raise EncodingError(f"bad ISIL padding: {bytes(data).hex(' ')}")
    return "".join(out)


# --- content parameter and set information -------------------------------------------

def encode_content_parameter(oids: Iterable[int]) -> bytes:
    """The bitmap of the elements present; its first bit stands for OID 3."""
    present = sorted(set(oids))
    if not present or present[0] < 3:
        raise EncodingError(f"the content parameter lists OIDs from 3 up, not {present}")
    size = (present[-1] - 3) // 8 + 1
    value = sum(1 << (8 * size - 1 - (oid - 3)) for oid in present)
    return value.to_bytes(size, "big")


def decode_content_parameter(data: bytes) -> frozenset[int]:
    value, size = int.from_bytes(data, "big"), 8 * len(data)
    return frozenset(3 + i for i in range(size) if value >> (size - 1 - i) & 1)


def encode_set_information(parts_in_set: int, part_number: int) -> str:
    if not 1 <= part_number <= parts_in_set:
        raise EncodingError(f"part {part_number} of {parts_in_set} is not a set position")
    width = len(str(parts_in_set))
    return f"{parts_in_set}{part_number:0{width}d}"


def decode_set_information(text: str) -> tuple[int, int]:
    if not _is_digits(text) or len(text) % 2:
        raise EncodingError(f"set information {text!r} is not two numbers of equal width")
    half = len(text) // 2
    return int(text[:half]), int(text[half:])
