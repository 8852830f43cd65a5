"""ISO 28560 library tag data: what the RFID tag of a book or a card says, and how to write it.

Pure functions, no I/O: a reader driver hands over the user memory it read (blocks 0..n
of an ISO 15693 tag, and the DSFID when it knows it) and gets a `TagData` back. Errors
are `TagDataError`s with an English message for the log; the station translates them.

Two data models are in use in libraries:

- ISO 28560-3, the Danish data model (DS/INF 163): a fixed basic block of 34 bytes, cut
  to 32 on 32-byte tags. See `decode_28560_3`.
- ISO 28560-2: data elements compacted by the rules of ISO/IEC 15962. See
  `drivers.rfid.iso28560_2` for the byte layer and its sources.

ISO 28560-3 layout, and where each fact comes from (public sources, read and not copied):

- Byte 0: the data model version in the high nibble, the type of usage in the low nibble;
  usage 0 acquisition, 1 item for circulation, 2 not for circulation, 7 discarded,
  8 patron card, 9 library equipment (3-6 local or future use, 6 "no information").
  "RFID Data Model for Libraries", Danish Standard S24/u4 working group, Doc 067, July
  2005, 3.2.1.1-3.2.1.2 (https://www.yumpu.com/en/document/view/3373469/rfid-data-model-for-libraries-biblstandard/27;
  February 2009 edition: https://kipdf.com/rfid-data-model-for-libraries_5ac2cb931723dd11313a682c.html);
  nibble order as in GallusMax/libdanrfid (DDMData.java: 0x11 "V1AUSLEIHBAR",
  0x12 "V1PRAESENZ", 0x18 "V1KUNDE") and BibliothekTHWildau/ISO28560
  (ISO28560_3_BasicBlock.java: content parameter << 4 | type of usage); usage 9 and the
  3-6 meanings from the ISO 28560-1 table as given by TH Wildau. Not every vendor agrees:
  libdanrfid notes Bibliotheca tags with the nibbles swapped (0x21, 0x71), and two open
  decoders read the usage from the high nibble; `lenient` decoding recognises that order.
- Byte 1 number of parts in the item, byte 2 ordinal part number; part 0 means one tag
  for the whole set (GBV Verbundwiki "Dänisches Datenmodell",
  https://verbundwiki.gbv.de/pages/viewpage.action?pageId=6455454; libdanrfid getofParts,
  getPartNum).
- Bytes 3-18 primary item identifier, 16 bytes of UTF-8 padded with 0x00 (Doc 067;
  EnvisionWare's DDM notes: "Encoding is international, using UTF-8"); byte 3 = 0x01
  means the identifier is in an extension block (ISO 28560-3:2011 clarification by its
  editor, http://biblstandard.dk/rfid/docs/clarification_28560-3.htm).
- Bytes 19-20 CRC, least significant byte first: CRC-CCITT, polynomial 0x1021, initial
  value 0xFFFF, no final XOR, over the basic block without the CRC field, a 32-byte tag
  counted as if its two missing bytes were 0x00. Check value: the CRC of the ASCII text
  "RFID tag data model" is 0x1AEE. libdanrfid CRC.java (DDCRC: skip 19 and 20, "fill up
  with nullbytes to 34") and CRCTest.java; TH Wildau TagCRC; Hypernova-Oy/lainuri
  (programs/lainuri-serve/lib/iso28560: bytes 0-18, 21-31 and two 0x00), whose tests
  reproduce ISO 28560-3 Annex B examples B.1 and B.2 and a real Finnish tag, all of which
  this layout and CRC read back.
- Bytes 21-22 country of the owner library (ISO 3166-1), bytes 23-33 the owner library,
  cut to bytes 23-31 on a 32-byte tag (Doc 067 3.2.1.7-3.2.1.8, 3.2.3; libdanrfid reads
  9 bytes at 23 "even when ISIL allow for 11 chars"; TH Wildau writes the ISIL from byte
  21 with its first "-" removed; Annex B.1 as reproduced in lainuri: "DK718500" for
  DK-718500). Here `TagData.isil` is the whole ISIL, "DK-718500".
- DSFID 0x3E marks ISO 28560-3 and 0x06 ISO 28560-2 (lainuri iso28560
  new_data_object and its tests: Annex B examples with DSFID 0x3E, the Finnish 28560-2
  tag with DSFID 0x06). Many tags carry no DSFID at all, so
  `decode_tag` also tells the models apart by their bytes.

AFI (the security byte, in the tag's system memory): 0xC2 "on loan" was allocated to
libraries under ISO/IEC 15961, 0x07 "in stock" (http://biblstandard.dk/rfid/afi.htm);
the Danish model moved to these values in 2008 (2009 edition, editorial note 2). Older
3M installations use 0xD7 secured (the gate alarms) / 0xDA unsecured
(Biblio::RFID::RFID501, https://metacpan.org/pod/Biblio::RFID::RFID501).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Literal

from drivers.rfid import iso28560_2 as p2
from drivers.rfid.iso28560_2 import Compaction, DataElement, EncodingError

DSFID_28560_2 = 0x06
DSFID_28560_3 = 0x3E

Model = Literal["28560-3", "28560-2"]


class TagDataError(ValueError):
    """Tag bytes that are not valid library tag data, or a `TagData` that cannot be written."""


class Usage(enum.Enum):
    ACQUISITION = "acquisition"
    LOANABLE = "loanable"
    REFERENCE = "reference"
    DISCARDED = "discarded"
    PATRON_CARD = "patron_card"
    EQUIPMENT = "equipment"
    UNKNOWN = "unknown"


# The type-of-usage class code of ISO 28560-1, shared by parts 2 and 3.
_USAGE_BY_CODE = {0: Usage.ACQUISITION, 1: Usage.LOANABLE, 2: Usage.REFERENCE,
                  7: Usage.DISCARDED, 8: Usage.PATRON_CARD, 9: Usage.EQUIPMENT}
_CODE_BY_USAGE = {usage: code for code, usage in _USAGE_BY_CODE.items()}
_CODE_BY_USAGE[Usage.UNKNOWN] = 6  # "no information about usage on the tag"


def usage_from_code(code: int) -> Usage:
    return _USAGE_BY_CODE.get(code, Usage.UNKNOWN)


@dataclass(frozen=True)
class TagData:
    """The library data on one tag. `isil` is the owner's whole ISIL ("DK-710100") and
    `country` its prefix. `crc_ok` is False only from lenient decoding of a 28560-3 tag
    whose CRC does not match (28560-2 has no CRC). `warnings` says what lenient decoding
    forgave."""

    model: Model
    usage: Usage
    primary_item_id: str
    parts_in_set: int = 1
    part_number: int = 1
    country: str = ""
    isil: str = ""
    crc_ok: bool = True
    warnings: tuple[str, ...] = ()

    @property
    def is_patron_card(self) -> bool:
        return self.usage is Usage.PATRON_CARD

    @property
    def is_complete_set(self) -> bool:
        """Whether this one tag is the whole item; otherwise the kiosk sends the set to the
        desk. 0 parts means the tag does not say, which counts as a single item."""
        return self.parts_in_set <= 1

    def set_label(self) -> str:
        return f"{self.part_number}/{self.parts_in_set}"


# --- AFI -----------------------------------------------------------------------------

AFI_IN_STOCK = 0x07
AFI_ON_LOAN = 0xC2


@dataclass(frozen=True)
class AfiPair:
    """The two AFI values of a library's item security: any other value is not on loan."""

    in_stock: int = AFI_IN_STOCK
    on_loan: int = AFI_ON_LOAN

    def __post_init__(self) -> None:
        if not (0 <= self.in_stock <= 0xFF and 0 <= self.on_loan <= 0xFF):
            raise ValueError("an AFI is one byte, 0x00-0xFF")
        if self.in_stock == self.on_loan:
            raise ValueError("the in-stock and on-loan AFI must differ")

    def for_state(self, *, on_loan: bool) -> int:
        return self.on_loan if on_loan else self.in_stock

    def is_on_loan(self, afi: int) -> bool:
        return afi == self.on_loan


AFI_ISO28560 = AfiPair()
AFI_3M_LEGACY = AfiPair(in_stock=0xD7, on_loan=0xDA)


# --- ISO 28560-3 ---------------------------------------------------------------------

KNOWN_VERSIONS = (1, 2)
_CRC_AT = slice(19, 21)
_COUNTRY = re.compile(r"[A-Z]{0,2}")


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-CCITT: polynomial 0x1021, most significant bit first, no final XOR."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


def basic_block_crc(block: bytes) -> int:
    """The CRC of an ISO 28560-3 basic block: every byte but the CRC field, a 32-byte
    block counted as the full 34 with two 0x00 bytes."""
    return crc16_ccitt((bytes(block[:19]) + bytes(block[21:34])).ljust(32, b"\0"))


def _stored_crc(block: bytes) -> int:
    return int.from_bytes(block[_CRC_AT], "little")


def _reverse_blocks(data: bytes) -> bytes:
    return b"".join(data[i:i + 4][::-1] for i in range(0, len(data), 4))


def decode_28560_3(data: bytes, *, lenient: bool = False) -> TagData:
    """The basic block of an ISO 28560-3 tag: 32 bytes (a 32-byte tag) or 34 and more.

    Strict decoding rejects a wrong length, a bad CRC, an unknown version and text that is
    not clean UTF-8. `lenient` reads what older systems wrote: a bad CRC gives
    `crc_ok=False`, and swapped nibbles, 4-byte blocks stored in reverse and space padding
    are forgiven; each forgiveness is named in `warnings`."""
    data = bytes(data)
    if len(data) != 32 and len(data) < 34:
        raise TagDataError(f"ISO 28560-3 data is 32 bytes or at least 34, not {len(data)}")
    block, warnings = data[:34], []
    crc_ok = _stored_crc(block) == basic_block_crc(block)
    if not crc_ok:
        message = (f"ISO 28560-3 CRC mismatch: the tag holds 0x{_stored_crc(block):04X}, "
                   f"its data gives 0x{basic_block_crc(block):04X}")
        if not lenient:
            raise TagDataError(message)
        reversed_ = _reverse_blocks(data)[:34] if len(data) % 4 == 0 else b""
        if reversed_ and _stored_crc(reversed_) == basic_block_crc(reversed_):
            block, crc_ok = reversed_, True
            warnings.append("the bytes of every 4-byte block were in reverse order")
        else:
            warnings.append(message)

    version, code = block[0] >> 4, block[0] & 0x0F
    if version not in KNOWN_VERSIONS:
        if not lenient:
            raise TagDataError(f"unknown ISO 28560-3 data model version {version} "
                               f"(byte 0 is 0x{block[0]:02X})")
        if code in KNOWN_VERSIONS:
            version, code = code, version
            warnings.append(f"byte 0 (0x{block[0]:02X}) holds the usage in the high nibble")
        else:
            warnings.append(f"unknown data model version {version}")

    parts, part = block[1], block[2]
    if parts and part > parts:
        if not lenient:
            raise TagDataError(f"the tag says part {part} of a set of {parts}")
        warnings.append(f"part {part} of a set of {parts}")
    if block[3] == 0x01:
        raise TagDataError("the primary item identifier is in an ISO 28560-3 extension block, "
                           "which this station cannot read")

    item_id = _field_text(block[3:19], "primary item identifier", lenient, warnings)
    country = _field_text(block[21:23], "country", lenient, warnings)
    library = _field_text(block[23:], "owner library", lenient, warnings)
    usage = usage_from_code(code)
    if not lenient:
        if not _COUNTRY.fullmatch(country):
            raise TagDataError(f"country {country!r} is not an ISO 3166 code")
        _check_isil_chars(library, "owner library")
        _check_item_id(item_id, usage)
    isil = f"{country}-{library}" if country and library else library
    return TagData("28560-3", usage, item_id, parts, part, country, isil, crc_ok,
                   tuple(warnings))


def encode_28560_3(tag: TagData, *, version: int = 1, size: Literal[32, 34] = 32) -> bytes:
    """The basic block for `tag`: 32 bytes for a 32-byte tag (owner library up to 9
    bytes), or 34 (up to 11)."""
    if version not in KNOWN_VERSIONS:
        raise TagDataError(f"ISO 28560-3 data model version {version} is not one of "
                           f"{KNOWN_VERSIONS}")
    if size not in (32, 34):
        raise TagDataError(f"an ISO 28560-3 basic block is 32 or 34 bytes, not {size}")
    if not (0 <= tag.parts_in_set <= 0xFF and 0 <= tag.part_number <= 0xFF):
        raise TagDataError(f"set {tag.set_label()} does not fit one byte each")
    if tag.parts_in_set and tag.part_number > tag.parts_in_set:
        raise TagDataError(f"part {tag.part_number} of a set of {tag.parts_in_set}")
    _check_item_id(tag.primary_item_id, tag.usage)
    if not _COUNTRY.fullmatch(tag.country):
        raise TagDataError(f"country {tag.country!r} is not an ISO 3166 code (two capitals)")
    library = tag.isil
    if tag.country and tag.isil:
        library = tag.isil.removeprefix(f"{tag.country}-")
        if library == tag.isil or not library:
            raise TagDataError(f"ISIL {tag.isil!r} does not start with country "
                               f"{tag.country!r} and a library part")
    _check_isil_chars(library, "owner library")

    block = bytearray(size)
    block[0] = version << 4 | _CODE_BY_USAGE[tag.usage]
    block[1], block[2] = tag.parts_in_set, tag.part_number
    _put_text(block, 3, 16, tag.primary_item_id, "primary item identifier")
    _put_text(block, 21, 2, tag.country, "country")
    _put_text(block, 23, size - 23, library, "owner library")
    block[_CRC_AT] = basic_block_crc(block).to_bytes(2, "little")
    return bytes(block)


def _field_text(raw: bytes, what: str, lenient: bool, warnings: list[str]) -> str:
    """A NUL-padded UTF-8 field; lenient decoding cleans what it can and says so."""
    text_bytes, _, after = bytes(raw).partition(b"\0")
    if after.strip(b"\0"):
        if not lenient:
            raise TagDataError(f"the {what} field has bytes after its end: {raw.hex(' ')}")
        warnings.append(f"the {what} field has bytes after its end")
    try:
        text = text_bytes.decode("utf-8")
    except UnicodeDecodeError:
        if not lenient:
            raise TagDataError(f"the {what} is not UTF-8 text: {text_bytes.hex(' ')}") from None
        text = text_bytes.decode("utf-8", errors="replace")
        warnings.append(f"the {what} is not UTF-8 text")
    if not text.isprintable() or text != text.strip():
        if not lenient:
            raise TagDataError(f"the {what} holds control characters or padding "
                               f"spaces: {text!r}")
        text = "".join(ch for ch in text if ch.isprintable()).strip()
        warnings.append(f"the {what} held control characters or padding spaces")
    return text


def _put_text(block: bytearray, at: int, width: int, text: str, what: str) -> None:
    raw = text.encode("utf-8")
    if len(raw) > width:
        raise TagDataError(f"the {what} {text!r} is {len(raw)} bytes; {width} fit")
    block[at:at + len(raw)] = raw


def _check_item_id(item_id: str, usage: Usage) -> None:
    if "\0" in item_id or not item_id.isprintable() or item_id != item_id.strip():
        raise TagDataError(f"primary item identifier {item_id!r} holds control characters "
                           "or padding spaces")
    if not item_id and usage is not Usage.ACQUISITION:
        raise TagDataError("no primary item identifier (only acquisition tags may lack one)")


def _check_isil_chars(text: str, what: str) -> None:
    if not set(text) <= p2.ISIL_CHARS or len(text) > p2.ISIL_MAX_LENGTH:
        raise TagDataError(f"the {what} {text!r} is not ISIL text (A-Z a-z 0-9 - / :)")


# --- ISO 28560-2 ---------------------------------------------------------------------

def _isil_prefix(isil: str) -> str:
    return isil.partition("-")[0] if "-" in isil else ""


def decode_28560_2(data: bytes, *, lenient: bool = False) -> TagData:
    """The data elements of an ISO 28560-2 tag: the primary item identifier (required),
    owner ISIL, set information and type of usage; others are skipped. `lenient` keeps
    what it could read of a damaged or partly read tag and names the rest in `warnings`."""
    data = bytes(data)
    warnings: list[str] = []

    def complain(message: str) -> None:
        if not lenient:
            raise TagDataError(message)
        warnings.append(message)

    # A tag without a DSFID register may hold the DSFID in its first byte; no element
    # may come before the primary item identifier, so the byte cannot be misread.
    if len(data) >= 2 and data[0] == DSFID_28560_2 \
            and (data[1] & 0x0F) == p2.OID_PRIMARY_ITEM_ID:
        data = data[1:]
    parsed = p2.parse_data_set(data)
    if not parsed.elements:
        raise TagDataError(parsed.problem or "no ISO 28560-2 data elements (a blank tag?)")
    if parsed.problem:
        complain(parsed.problem)
    if parsed.elements[0].oid != p2.OID_PRIMARY_ITEM_ID:
        complain(f"the first data element is OID {parsed.elements[0].oid}, "
                 "not the primary item identifier")
    elements: dict[int, DataElement] = {}
    for element in parsed.elements:
        if element.oid in elements:
            complain(f"data element OID {element.oid} appears twice")
        else:
            elements[element.oid] = element
    if p2.OID_PRIMARY_ITEM_ID not in elements:
        raise TagDataError("the tag has no primary item identifier (OID 1)")

    def read(oid: int, what: str, convert, default):
        element = elements.get(oid)
        if element is None:
            return default
        try:
            return convert(element)
        except (EncodingError, TagDataError) as exc:
            complain(f"the {what} cannot be read: {exc}")
            return default

    item_id = read(p2.OID_PRIMARY_ITEM_ID, "primary item identifier", _text_of, None)
    if item_id is None:  # lenient and unreadable: nothing identifies the item
        raise TagDataError(warnings[-1])
    isil = read(p2.OID_OWNER_ISIL, "owner ISIL", _isil_of, "")
    parts, part = read(p2.OID_SET_INFORMATION, "set information",
                       lambda e: _check_set(p2.decode_set_information(_text_of(e))), (1, 1))
    usage = read(p2.OID_TYPE_OF_USAGE, "type of usage", _usage_of, Usage.UNKNOWN)
    declared = read(p2.OID_CONTENT_PARAMETER, "content parameter", _declared_oids, frozenset())
    if missing := sorted(declared - elements.keys()):
        complain(f"the content parameter lists OIDs {missing} that the data lacks "
                 "(read more blocks?)")
    try:
        _check_item_id(item_id, usage)
    except TagDataError as exc:
        complain(str(exc))
    return TagData("28560-2", usage, item_id, parts, part, _isil_prefix(isil), isil, True,
                   tuple(warnings))


def encode_28560_2(tag: TagData, *, block_size: int | None = 4) -> bytes:
    """Tag memory for `tag`, terminated and zero-padded to whole blocks; the primary item
    identifier ends on a block boundary so that it can be locked. Write DSFID 0x06."""
    _check_item_id(tag.primary_item_id, tag.usage)
    if tag.country != _isil_prefix(tag.isil):
        raise TagDataError(f"ISO 28560-2 keeps no country apart from the ISIL: country "
                           f"{tag.country!r} must be the prefix of {tag.isil!r}")
    try:
        elements = [DataElement(p2.OID_PRIMARY_ITEM_ID, *p2.compact(tag.primary_item_id))]
        optional = []
        if tag.isil:
            optional.append(DataElement(p2.OID_OWNER_ISIL, Compaction.APPLICATION,
                                        p2.compact_isil(tag.isil)))
        if (tag.parts_in_set, tag.part_number) != (1, 1):
            text = p2.encode_set_information(tag.parts_in_set, tag.part_number)
            optional.append(DataElement(p2.OID_SET_INFORMATION, *p2.compact(text)))
        if tag.usage is not Usage.UNKNOWN:
            optional.append(DataElement(p2.OID_TYPE_OF_USAGE, Compaction.APPLICATION,
                                        bytes([_CODE_BY_USAGE[tag.usage] << 4])))
        if optional:
            elements.append(DataElement(p2.OID_CONTENT_PARAMETER, Compaction.APPLICATION,
                                        p2.encode_content_parameter(e.oid for e in optional)))
        return p2.build_data_set(elements + optional, block_size=block_size)
    except EncodingError as exc:
        raise TagDataError(str(exc)) from exc


def _text_of(element: DataElement) -> str:
    if element.compaction == Compaction.APPLICATION:
        raise TagDataError("application-defined compaction where text was expected")
    return p2.decompact(element.compaction, element.data)


def _isil_of(element: DataElement) -> str:
    if element.compaction == Compaction.APPLICATION:
        isil = p2.decompact_isil(element.data)
    else:
        isil = p2.decompact(element.compaction, element.data)
    if not isil:
        raise TagDataError("the ISIL is empty")
    _check_isil_chars(isil, "owner ISIL")
    return isil


def _check_set(position: tuple[int, int]) -> tuple[int, int]:
    parts, part = position
    if not 1 <= part <= parts:
        raise TagDataError(f"part {part} of a set of {parts}")
    return position


def _usage_of(element: DataElement) -> Usage:
    if element.compaction not in (Compaction.APPLICATION, Compaction.OCTETS) \
            or len(element.data) != 1:
        raise TagDataError(f"type of usage is one byte, not {element.data.hex(' ')!r} "
                           f"under compaction {element.compaction}")
    return usage_from_code(element.data[0] >> 4)


def _declared_oids(element: DataElement) -> frozenset[int]:
    if element.compaction != Compaction.APPLICATION:
        raise TagDataError(f"content parameter under compaction {element.compaction}")
    return p2.decode_content_parameter(element.data)


# --- either model --------------------------------------------------------------------

def decode_tag(data: bytes, dsfid: int | None = None, *, lenient: bool = False) -> TagData:
    """The library data on a tag in either model: by its DSFID when that names one, else
    by its bytes (an ISO 28560-3 basic block with a good CRC, else ISO 28560-2 elements,
    else a 28560-3 block with a bad CRC)."""
    data = bytes(data)
    if dsfid == DSFID_28560_2:
        return decode_28560_2(data, lenient=lenient)
    if dsfid == DSFID_28560_3:
        return decode_28560_3(data, lenient=lenient)

    block_sized = len(data) == 32 or len(data) >= 34
    if block_sized and _stored_crc(data) == basic_block_crc(data):
        return decode_28560_3(data, lenient=lenient)
    error: TagDataError | None = None
    looks_2 = bool(data) and ((data[0] & 0x0F) == p2.OID_PRIMARY_ITEM_ID
                              or data[0] == DSFID_28560_2)
    if looks_2:
        try:
            return decode_28560_2(data)
        except TagDataError as exc:
            error = exc
    # A 28560-3 block with a bad CRC wins over a broken 28560-2 reading of the same bytes:
    # older systems left many of those, and 0x11 reads as either. A DSFID settles it.
    if block_sized and ((data[0] >> 4) in KNOWN_VERSIONS
                        or lenient and ((data[0] & 0x0F) in KNOWN_VERSIONS
                                        or _reversed_crc_ok(data))):
        return decode_28560_3(data, lenient=lenient)
    if looks_2 and lenient:
        return decode_28560_2(data, lenient=True)
    if error is not None:
        raise error
    first = f" (first byte 0x{data[0]:02X})" if data else ""
    raise TagDataError(f"the tag holds neither ISO 28560-3 nor ISO 28560-2 data{first}")


def _reversed_crc_ok(data: bytes) -> bool:
    if len(data) % 4:
        return False
    block = _reverse_blocks(data)[:34]
    return _stored_crc(block) == basic_block_crc(block)


def encode_tag(tag: TagData) -> bytes:
    """The user memory for `tag` in its own model, with the default options."""
    if tag.model == "28560-3":
        return encode_28560_3(tag)
    if tag.model == "28560-2":
        return encode_28560_2(tag)
    raise TagDataError(f"unknown data model {tag.model!r}")
