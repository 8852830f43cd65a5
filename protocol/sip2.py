"""SIP2 (3M Standard Interchange Protocol 2.00) as code: message layouts and the codec.

Pure: no I/O, nothing of ours imported. A message is a fixed part (positional fields
of fixed width, in the spec's order) then variable fields, each a 2-letter id, a value
and `|`; repeatable fields (AF, AU, BM...) are lists. Error detection appends
`AY<sequence digit>AZ<checksum>`, the checksum being the 16-bit two's complement of the
sum of the bytes actually sent, from the first byte through `AZ`, as 4 upper-case hex.

    msg = CheckoutRequest(no_block=False, transaction_date=now, institution_id="thcs",
                          patron_identifier="HS-1", item_identifier="TK-1")
    wire = encode(msg, sequence=3)            # b"11NN2026...AY3AZ....\\r"
    again = decode(wire)                      # CheckoutRequest, again.sequence == 3

Decoding checks the frame (fixed part, checksum, encoding) always; `strict=True` also
checks required variable fields and the format of each fixed field. Unknown variable
fields (vendor extensions) are kept, in order, and encoded back.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

__all__ = [
    "BLANK_DATE", "CIRCULATION_STATUS", "ChecksumError", "Framer", "FrameTooLong",
    "Message", "MESSAGES", "PATRON_STATUS_FLAGS", "SUMMARY_FLAGS", "SUPPORTED_MESSAGES",
    "Sip2Error", "checksum", "decode", "encode", "format_date", "message_class",
    "parse_date", "patron_status", "summary", "supported_messages",
]

BLANK_DATE = " " * 18
MAX_FIELD_CHARS = 255  # the spec's limit for a variable field


class Sip2Error(ValueError):
    """A message that cannot be encoded or decoded; the text names the field."""

    def __init__(self, text: str, *, code: str | None = None, field: str | None = None):
        super().__init__(text)
        self.code = code
        self.field = field


class ChecksumError(Sip2Error):
    """The AZ checksum does not match the bytes received (answer 96)."""


class FrameTooLong(Sip2Error):
    """More bytes than the size limit arrived with no terminator."""


# --- layouts --------------------------------------------------------------------

class Fixed(NamedTuple):
    name: str
    width: int
    kind: str  # yn, ynu, bit, date, digits, count, status, flags, text
    default: str | None = None  # None: the caller must give it


class Var(NamedTuple):
    id: str
    name: str
    required: bool = False
    repeatable: bool = False


class Layout(NamedTuple):
    code: str
    name: str
    fixed: tuple[Fixed, ...]
    variable: tuple[Var, ...]


_DATE = Fixed("transaction_date", 18, "date")
_LANG = Fixed("language", 3, "digits", "000")
_PSTATUS = Fixed("patron_status", 14, "status", " " * 14)
_AO = Var("AO", "institution_id", True)
_AA = Var("AA", "patron_identifier", True)
_AB = Var("AB", "item_identifier", True)
_AC = Var("AC", "terminal_password")
_AD = Var("AD", "patron_password")
_AJ = Var("AJ", "title_identifier")
_AF = Var("AF", "screen_message", repeatable=True)
_AG = Var("AG", "print_line", repeatable=True)
_CIRC_REPLY_VARS = (_AO, _AA, _AB, Var("AJ", "title_identifier", True), Var("AH", "due_date", True),
                    Var("BT", "fee_type"), Var("CI", "security_inhibit"), Var("BH", "currency_type"),
                    Var("BV", "fee_amount"), Var("CK", "media_type"), Var("CH", "item_properties"),
                    Var("BK", "transaction_id"), _AF, _AG)
_CIRC_REPLY_FIXED = (Fixed("ok", 1, "bit"), Fixed("renewal_ok", 1, "yn", "N"),
                     Fixed("magnetic_media", 1, "ynu", "U"), Fixed("desensitize", 1, "ynu", "U"), _DATE)

_LAYOUTS = (
    Layout("93", "LoginRequest",
           (Fixed("uid_algorithm", 1, "text", "0"), Fixed("pwd_algorithm", 1, "text", "0")),
           (Var("CN", "login_user_id", True), Var("CO", "login_password", True),
            Var("CP", "location_code"))),
    Layout("94", "LoginResponse", (Fixed("ok", 1, "bit"),), ()),
    Layout("99", "SCStatus",
           (Fixed("status_code", 1, "digits", "0"), Fixed("max_print_width", 3, "digits", "000"),
            Fixed("protocol_version", 4, "text", "2.00")), ()),
    Layout("98", "ACSStatus",
           (Fixed("online_status", 1, "yn"), Fixed("checkin_ok", 1, "yn"), Fixed("checkout_ok", 1, "yn"),
            Fixed("acs_renewal_policy", 1, "yn"), Fixed("status_update_ok", 1, "yn"),
            Fixed("offline_ok", 1, "yn"), Fixed("timeout_period", 3, "digits", "000"),
            Fixed("retries_allowed", 3, "digits", "999"), Fixed("date_time_sync", 18, "date"),
            Fixed("protocol_version", 4, "text", "2.00")),
           (_AO, Var("AM", "library_name"), Var("BX", "supported_messages", True),
            Var("AN", "terminal_location"), _AF, _AG)),
    Layout("23", "PatronStatusRequest", (_LANG, _DATE),
           (_AO, _AA, Var("AC", "terminal_password", True), Var("AD", "patron_password", True))),
    Layout("24", "PatronStatusResponse", (_PSTATUS, _LANG, _DATE),
           (_AO, _AA, Var("AE", "personal_name", True), Var("BL", "valid_patron"),
            Var("CQ", "valid_patron_password"), Var("BH", "currency_type"), Var("BV", "fee_amount"),
            _AF, _AG)),
    Layout("63", "PatronInformationRequest",
           (_LANG, _DATE, Fixed("summary", 10, "flags", " " * 10)),
           (_AO, _AA, _AC, _AD, Var("BP", "start_item"), Var("BQ", "end_item"))),
    Layout("64", "PatronInformationResponse",
           (_PSTATUS, _LANG, _DATE, Fixed("hold_items_count", 4, "count", "0000"),
            Fixed("overdue_items_count", 4, "count", "0000"),
            Fixed("charged_items_count", 4, "count", "0000"),
            Fixed("fine_items_count", 4, "count", "0000"),
            Fixed("recall_items_count", 4, "count", "0000"),
            Fixed("unavailable_holds_count", 4, "count", "0000")),
           (_AO, _AA, Var("AE", "personal_name", True), Var("BZ", "hold_items_limit"),
            Var("CA", "overdue_items_limit"), Var("CB", "charged_items_limit"),
            Var("BL", "valid_patron"), Var("CQ", "valid_patron_password"),
            Var("BH", "currency_type"), Var("BV", "fee_amount"), Var("CC", "fee_limit"),
            Var("AS", "hold_items", repeatable=True), Var("AT", "overdue_items", repeatable=True),
            Var("AU", "charged_items", repeatable=True), Var("AV", "fine_items", repeatable=True),
            Var("BU", "recall_items", repeatable=True),
            Var("CD", "unavailable_hold_items", repeatable=True),
            Var("BD", "home_address"), Var("BE", "email_address"), Var("BF", "home_phone_number"),
            _AF, _AG)),
    Layout("11", "CheckoutRequest",
           (Fixed("sc_renewal_policy", 1, "yn", "N"), Fixed("no_block", 1, "yn", "N"), _DATE,
            Fixed("nb_due_date", 18, "date", BLANK_DATE)),
           (_AO, _AA, _AB, Var("AC", "terminal_password", True), Var("CH", "item_properties"),
            _AD, Var("BO", "fee_acknowledged"), Var("BI", "cancel"))),
    Layout("12", "CheckoutResponse", _CIRC_REPLY_FIXED, _CIRC_REPLY_VARS),
    Layout("09", "CheckinRequest",
           (Fixed("no_block", 1, "yn", "N"), _DATE, Fixed("return_date", 18, "date", BLANK_DATE)),
           (Var("AP", "current_location", True), _AO, _AB, Var("AC", "terminal_password", True),
            Var("CH", "item_properties"), Var("BI", "cancel"))),
    Layout("10", "CheckinResponse",
           (Fixed("ok", 1, "bit"), Fixed("resensitize", 1, "yn", "N"),
            Fixed("magnetic_media", 1, "ynu", "U"), Fixed("alert", 1, "yn", "N"), _DATE),
           (_AO, _AB, Var("AQ", "permanent_location", True), _AJ, Var("CL", "sort_bin"),
            Var("AA", "patron_identifier"), Var("CK", "media_type"), Var("CH", "item_properties"),
            _AF, _AG)),
    Layout("29", "RenewRequest",
           (Fixed("third_party_allowed", 1, "yn", "N"), Fixed("no_block", 1, "yn", "N"), _DATE,
            Fixed("nb_due_date", 18, "date", BLANK_DATE)),
           (_AO, _AA, _AD, Var("AB", "item_identifier"), _AJ, _AC, Var("CH", "item_properties"),
            Var("BO", "fee_acknowledged"))),
    Layout("30", "RenewResponse", _CIRC_REPLY_FIXED, _CIRC_REPLY_VARS),
    Layout("65", "RenewAllRequest", (_DATE,),
           (_AO, _AA, _AD, _AC, Var("BO", "fee_acknowledged"))),
    Layout("66", "RenewAllResponse",
           (Fixed("ok", 1, "bit"), Fixed("renewed_count", 4, "count", "0000"),
            Fixed("unrenewed_count", 4, "count", "0000"), _DATE),
           (_AO, Var("BM", "renewed_items", repeatable=True),
            Var("BN", "unrenewed_items", repeatable=True), _AF, _AG)),
    Layout("17", "ItemInformationRequest", (_DATE,), (_AO, _AB, _AC)),
    Layout("18", "ItemInformationResponse",
           (Fixed("circulation_status", 2, "digits"), Fixed("security_marker", 2, "digits", "00"),
            Fixed("fee_type", 2, "digits", "01"), _DATE),
           (Var("CF", "hold_queue_length"), Var("AH", "due_date"), Var("CJ", "recall_date"),
            Var("CM", "hold_pickup_date"), _AB, Var("AJ", "title_identifier", True),
            Var("BG", "owner"), Var("BH", "currency_type"), Var("BV", "fee_amount"),
            Var("CK", "media_type"), Var("AQ", "permanent_location"), Var("AP", "current_location"),
            Var("CH", "item_properties"), _AF, _AG)),
    Layout("35", "EndPatronSessionRequest", (_DATE,), (_AO, _AA, _AC, _AD)),
    Layout("36", "EndSessionResponse", (Fixed("end_session", 1, "yn"), _DATE),
           (_AO, _AA, _AF, _AG)),
    Layout("37", "FeePaidRequest",
           (_DATE, Fixed("fee_type", 2, "digits", "01"), Fixed("payment_type", 2, "digits", "00"),
            Fixed("currency_type", 3, "text", "VND")),
           (Var("BV", "fee_amount", True), _AO, _AA, _AC, _AD, Var("CG", "fee_identifier"),
            Var("BK", "transaction_id"))),
    Layout("38", "FeePaidResponse", (Fixed("payment_accepted", 1, "yn"), _DATE),
           (_AO, _AA, Var("BK", "transaction_id"), _AF, _AG)),
    Layout("15", "HoldRequest", (Fixed("hold_mode", 1, "text"), _DATE),
           (Var("BW", "expiration_date"), Var("BS", "pickup_location"), Var("BY", "hold_type"),
            _AO, _AA, _AD, Var("AB", "item_identifier"), _AJ, _AC, Var("BO", "fee_acknowledged"))),
    Layout("16", "HoldResponse", (Fixed("ok", 1, "bit"), Fixed("available", 1, "yn", "N"), _DATE),
           (Var("BW", "expiration_date"), Var("BR", "queue_position"), Var("BS", "pickup_location"),
            _AO, _AA, Var("AB", "item_identifier"), _AJ, _AF, _AG)),
    Layout("19", "ItemStatusUpdateRequest", (_DATE,),
           (_AO, _AB, _AC, Var("CH", "item_properties", True))),
    Layout("20", "ItemStatusUpdateResponse", (Fixed("item_properties_ok", 1, "bit"), _DATE),
           (_AB, _AJ, Var("CH", "item_properties"), _AF, _AG)),
    Layout("01", "BlockPatronRequest", (Fixed("card_retained", 1, "yn", "N"), _DATE),
           (_AO, Var("AL", "blocked_card_message", True), _AA, Var("AC", "terminal_password", True))),
    Layout("25", "PatronEnableRequest", (_DATE,), (_AO, _AA, _AC, _AD)),
    Layout("26", "PatronEnableResponse", (_PSTATUS, _LANG, _DATE),
           (_AO, _AA, Var("AE", "personal_name", True), Var("BL", "valid_patron"),
            Var("CQ", "valid_patron_password"), _AF, _AG)),
    Layout("97", "RequestACSResend", (), ()),
    Layout("96", "RequestSCResend", (), ()),
)

_KIND_PATTERNS = {
    "yn": re.compile(r"[YN]"),
    "ynu": re.compile(r"[YNU]"),
    "bit": re.compile(r"[01]"),
    "date": re.compile(r"[0-9]{8}[ A-Z]{4}[0-9]{6}| {18}"),
    "digits": re.compile(r"[0-9]+"),
    "count": re.compile(r"[0-9]{4}| {4}"),
    "status": re.compile(r"[ YN]+"),
    "flags": re.compile(r"[ Y]+"),
    "text": re.compile(r"[\x20-\x7e]+"),
}
_KIND_HINT = {
    "yn": "Y or N", "ynu": "Y, N or U", "bit": "0 or 1", "date": "YYYYMMDDZZZZHHMMSS",
    "digits": "digits", "count": "4 digits or 4 blanks", "status": "Y or blank",
    "flags": "Y or blank", "text": "printable ASCII",
}
_FIELD_ID = re.compile(rb"[A-Z0-9a-z]{2}")


# --- messages -------------------------------------------------------------------

class Message:
    """One SIP2 message: `fixed` (name -> exact text) and `fields` (id -> list of values).

    Build it with the fixed fields' names and the variable fields' names or ids as
    keywords: `CheckinResponse(ok=True, AB="TK-1", permanent_location="Kho")`.
    Booleans become Y/N (or 1/0), ints zero-padded counts, datetimes SIP2 dates.
    Read it by name (`msg.item_identifier`, a repeatable one gives a list) or by id
    (`msg.get("AB")`, `msg.getall("AU")`); `flag`, `count`, `date` convert back.
    `sequence` and `checksum` hold the decoded trailer (None when absent).
    """

    layout: ClassVar[Layout]
    code: ClassVar[str]
    _by_name: ClassVar[dict[str, Fixed | Var]]
    _by_id: ClassVar[dict[str, Var]]

    __slots__ = ("fixed", "fields", "sequence", "checksum")

    def __init__(self, fields: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /,
                 **values: Any) -> None:
        self.fixed: dict[str, str] = {}
        self.fields: dict[str, list[str]] = {}
        self.sequence: int | None = None
        self.checksum: str | None = None
        items = list(fields.items() if isinstance(fields, Mapping) else fields) + list(values.items())
        for key, value in items:
            self.set(key, value)
        for spec in self.layout.fixed:
            if spec.name not in self.fixed and spec.default is not None:
                self.fixed[spec.name] = spec.default

    # -- writing --
    def set(self, key: str, value: Any) -> None:
        """Set a fixed field by name, or a variable field by name or 2-letter id."""
        spec = self._by_name.get(key) or self._by_id.get(key)
        if isinstance(spec, Fixed):
            self.fixed[spec.name] = _fixed_text(self.code, spec, value)
            return
        field_id = spec.id if spec is not None else key
        if spec is None and not (len(key) == 2 and key.isascii() and key.isalnum()):
            raise Sip2Error(f"{self.code} ({self.layout.name}): no field named {key!r}",
                            code=self.code, field=key)
        if value is None:
            self.fields.pop(field_id, None)
            return
        if isinstance(value, (list, tuple)):
            if not value:
                self.fields.pop(field_id, None)
                return
            self.fields[field_id] = [_var_text(v) for v in value]
        else:
            self.fields[field_id] = [_var_text(value)]

    def add(self, field_id: str, value: Any) -> None:
        """Append one more value of a repeatable field (AF, AU, BM ...)."""
        spec = self._by_name.get(field_id)
        field_id = spec.id if isinstance(spec, Var) else field_id
        self.fields.setdefault(field_id, []).append(_var_text(value))

    # -- reading --
    def get(self, field_id: str, default: str | None = None) -> str | None:
        values = self.fields.get(field_id)
        return values[0] if values else default

    def getall(self, field_id: str) -> list[str]:
        return list(self.fields.get(field_id, ()))

    def __getattr__(self, name: str) -> Any:
        spec = type(self)._by_name.get(name)
        if spec is None:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        if isinstance(spec, Fixed):
            return self.fixed.get(spec.name)
        if spec.repeatable:
            return self.getall(spec.id)
        return self.get(spec.id)

    def flag(self, name: str) -> bool | None:
        """Y/1 -> True, N/0 -> False, U/blank/absent -> None."""
        value = getattr(self, name) if name in self._by_name else self.get(name)
        return {"Y": True, "1": True, "N": False, "0": False}.get((value or "").strip())

    def count(self, name: str) -> int | None:
        value = (getattr(self, name) or "").strip()
        return int(value) if value.isdigit() else None

    def date(self, name: str, tz: dt.tzinfo | None = None) -> dt.datetime | None:
        value = getattr(self, name) if name in self._by_name else self.get(name)
        return parse_date(value, tz) if value else None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Message) and other.code == self.code
                and other.fixed == self.fixed and other.fields == self.fields)

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.fixed.items()]
        parts += [f"{k}={v if len(v) != 1 else v[0]!r}" for k, v in self.fields.items()]
        return f"{type(self).__name__}({', '.join(parts)})"

    def missing(self) -> list[str]:
        """Names of the fields the spec requires and this message lacks."""
        out = [f.name for f in self.layout.fixed if f.name not in self.fixed]
        out += [f"{v.id} ({v.name})" for v in self.layout.variable
                if v.required and v.id not in self.fields]
        return out


def _fixed_text(code: str, spec: Fixed, value: Any) -> str:
    if isinstance(value, bool):
        if spec.kind not in ("yn", "ynu", "bit"):
            raise Sip2Error(f"{code}: fixed field {spec.name} is not a flag", code=code, field=spec.name)
        text = ("1" if value else "0") if spec.kind == "bit" else ("Y" if value else "N")
    elif isinstance(value, int) and spec.kind in ("count", "digits"):
        text = str(value).zfill(spec.width)
        if len(text) > spec.width:
            text = "9" * spec.width  # the spec has no overflow: saturate
    elif isinstance(value, dt.datetime):
        text = format_date(value)
    elif value is None and spec.kind == "date":
        text = BLANK_DATE
    elif isinstance(value, str):
        text = value
    else:
        raise Sip2Error(f"{code}: fixed field {spec.name} cannot be {type(value).__name__}",
                        code=code, field=spec.name)
    if len(text) != spec.width or not text.isascii():
        raise Sip2Error(f"{code}: fixed field {spec.name} must be {spec.width} ASCII characters, "
                        f"got {text!r}", code=code, field=spec.name)
    return text


def _var_text(value: Any) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, dt.datetime):
        return format_date(value)
    return str(value)


def _make_class(layout: Layout) -> type[Message]:
    by_name: dict[str, Fixed | Var] = {f.name: f for f in layout.fixed}
    by_name.update({v.name: v for v in layout.variable})
    namespace = {"layout": layout, "code": layout.code, "_by_name": by_name,
                 "_by_id": {v.id: v for v in layout.variable}, "__slots__": (),
                 "__doc__": f"SIP2 message {layout.code}: {layout.name}."}
    return type(layout.name, (Message,), namespace)


MESSAGES: dict[str, type[Message]] = {layout.code: _make_class(layout) for layout in _LAYOUTS}

LoginRequest = MESSAGES["93"]
LoginResponse = MESSAGES["94"]
SCStatus = MESSAGES["99"]
ACSStatus = MESSAGES["98"]
PatronStatusRequest = MESSAGES["23"]
PatronStatusResponse = MESSAGES["24"]
PatronInformationRequest = MESSAGES["63"]
PatronInformationResponse = MESSAGES["64"]
CheckoutRequest = MESSAGES["11"]
CheckoutResponse = MESSAGES["12"]
CheckinRequest = MESSAGES["09"]
CheckinResponse = MESSAGES["10"]
RenewRequest = MESSAGES["29"]
RenewResponse = MESSAGES["30"]
RenewAllRequest = MESSAGES["65"]
RenewAllResponse = MESSAGES["66"]
ItemInformationRequest = MESSAGES["17"]
ItemInformationResponse = MESSAGES["18"]
EndPatronSessionRequest = MESSAGES["35"]
EndSessionResponse = MESSAGES["36"]
FeePaidRequest = MESSAGES["37"]
FeePaidResponse = MESSAGES["38"]
HoldRequest = MESSAGES["15"]
HoldResponse = MESSAGES["16"]
ItemStatusUpdateRequest = MESSAGES["19"]
ItemStatusUpdateResponse = MESSAGES["20"]
BlockPatronRequest = MESSAGES["01"]
PatronEnableRequest = MESSAGES["25"]
PatronEnableResponse = MESSAGES["26"]
RequestACSResend = MESSAGES["97"]
RequestSCResend = MESSAGES["96"]

__all__ += [layout.name for layout in _LAYOUTS]


def message_class(code: str) -> type[Message]:
    try:
        return MESSAGES[code]
    except KeyError:
        raise Sip2Error(f"unknown SIP2 message {code!r}", code=code) from None


# --- the fixed-field vocabularies ----------------------------------------------

# Patron status (24, 26, 64): 14 positions, Y = the condition holds.
PATRON_STATUS_FLAGS = (
    "charge_privileges_denied", "renewal_privileges_denied", "recall_privileges_denied",
    "hold_privileges_denied", "card_reported_lost", "too_many_items_charged",
    "too_many_items_overdue", "too_many_renewals", "too_many_claims_of_items_returned",
    "too_many_items_lost", "excessive_outstanding_fines", "excessive_outstanding_fees",
    "recall_overdue", "too_many_items_billed",
)
# Summary (63): which list the 64 should carry; the SC sets at most one Y.
SUMMARY_FLAGS = ("hold_items", "overdue_items", "charged_items", "fine_items", "recall_items",
                 "unavailable_holds")
# Supported messages (98 BX): 16 positions.
SUPPORTED_MESSAGES = (
    "patron_status", "checkout", "checkin", "block_patron", "sc_acs_status", "resend", "login",
    "patron_information", "end_patron_session", "fee_paid", "item_information",
    "item_status_update", "patron_enable", "hold", "renew", "renew_all",
)
# Circulation status (18).
CIRCULATION_STATUS = {
    "other": "01", "on_order": "02", "available": "03", "charged": "04",
    "charged_no_recall": "05", "in_process": "06", "recalled": "07", "waiting_on_hold_shelf": "08",
    "waiting_to_be_reshelved": "09", "in_transit": "10", "claimed_returned": "11", "lost": "12",
    "missing": "13",
}


def _positions(names: Sequence[str], chosen: Iterable[str], yes: str, no: str, what: str) -> str:
    chosen = set(chosen)
    unknown = chosen - set(names)
    if unknown:
        raise Sip2Error(f"unknown {what}: {', '.join(sorted(unknown))}")
    return "".join(yes if name in chosen else no for name in names)


def patron_status(*denied: str) -> str:
    """The 14-character patron status with Y at each named condition."""
    return _positions(PATRON_STATUS_FLAGS, denied, "Y", " ", "patron status flag")


def summary(*wanted: str) -> str:
    return _positions(SUMMARY_FLAGS, wanted, "Y", " ", "summary flag") + "    "


def supported_messages(*supported: str) -> str:
    return _positions(SUPPORTED_MESSAGES, supported, "Y", "N", "message")


def format_date(when: dt.datetime | dt.date) -> str:
    """YYYYMMDDZZZZHHMMSS; ZZZZ is blank for local time, `   Z` for UTC.

    An aware datetime in another zone is written as its own wall-clock time with a
    blank zone: SIP2 cannot say "+07:00", and both ends are assumed to share it."""
    if not isinstance(when, dt.datetime):
        when = dt.datetime.combine(when, dt.time(23, 59, 59))
    offset = when.utcoffset()
    zone = "   Z" if offset == dt.timedelta(0) else "    "
    return f"{when:%Y%m%d}{zone}{when:%H%M%S}"


def parse_date(text: str, tz: dt.tzinfo | None = None) -> dt.datetime | None:
    """A SIP2 date; blank -> None. `   Z` -> UTC; blank zone -> `tz` (naive if None)."""
    if not text or not text.strip():
        return None
    if not _KIND_PATTERNS["date"].fullmatch(text):
        raise Sip2Error(f"not a SIP2 date (YYYYMMDDZZZZHHMMSS): {text!r}")
    try:
        value = dt.datetime.strptime(text[:8] + text[12:], "%Y%m%d%H%M%S")
    except ValueError:
        raise Sip2Error(f"not a valid date: {text!r}") from None
    if text[8:12].strip() == "Z":
        return value.replace(tzinfo=dt.timezone.utc)
    return value.replace(tzinfo=tz) if tz is not None else value


# --- the wire -------------------------------------------------------------------

def checksum(data: bytes) -> str:
    """The 4 upper-case hex digits for the bytes from the message start through `AZ`."""
    return f"{(-sum(data)) & 0xFFFF:04X}"


def encode(message: Message, *, sequence: int | None = None, error_detection: bool = True,
           encoding: str = "utf-8", terminator: str = "\r", strict: bool = True,
           errors: str = "strict") -> bytes:
    """The bytes to send, terminator included.

    With error detection the trailer is `AY<sequence>AZ<checksum>` (just `AZ<checksum>`
    when `sequence` is None, as for 96/97); the checksum is over the encoded bytes.
    `strict` refuses a message that lacks a field the spec requires; `errors` is
    str.encode's ("replace" writes ? for what the encoding lacks, as CP850 lacks
    most Vietnamese letters)."""
    layout = message.layout
    if strict:
        missing = message.missing()
        if missing:
            raise Sip2Error(f"{layout.code} ({layout.name}): missing {', '.join(missing)}",
                            code=layout.code, field=missing[0])
    out = bytearray(layout.code.encode("ascii"))
    for spec in layout.fixed:
        out += message.fixed.get(spec.name, "").encode("ascii")
    known = [v.id for v in layout.variable if v.id in message.fields]
    extra = [k for k in message.fields if k not in {v.id for v in layout.variable}]
    for field_id in known + extra:
        for value in message.fields[field_id]:
            if "|" in value or "\r" in value or "\n" in value:
                raise Sip2Error(f"{layout.code}: field {field_id} contains '|' or a line break",
                                code=layout.code, field=field_id)
            try:
                out += field_id.encode("ascii") + value.encode(encoding, errors) + b"|"
            except UnicodeEncodeError as exc:
                raise Sip2Error(f"{layout.code}: field {field_id} cannot be written in {encoding}: "
                                f"{value[exc.start:exc.end]!r}", code=layout.code, field=field_id) from None
    if error_detection:
        if sequence is not None:
            if not 0 <= sequence <= 9:
                raise Sip2Error(f"sequence must be a digit 0-9, not {sequence}", field="AY")
            out += b"AY" + str(sequence).encode("ascii")
        out += b"AZ"
        out += checksum(bytes(out)).encode("ascii")
    if terminator not in ("\r", "\r\n"):
        raise Sip2Error(f"terminator must be \\r or \\r\\n, not {terminator!r}")
    return bytes(out) + terminator.encode("ascii")


_TRAILER = re.compile(rb"(?:AY([0-9]))?AZ([0-9A-Fa-f]{4})$")


def decode(data: bytes, encoding: str = "utf-8", *, strict: bool = False) -> Message:
    """One message from its bytes (a trailing \\r, \\r\\n or \\n is dropped).

    Raises ChecksumError when an AZ trailer does not match, Sip2Error (naming the
    field) for an unknown code, a short fixed part, or bytes the encoding refuses;
    with `strict`, also for a missing required field or a malformed fixed field."""
    frame = bytes(data).lstrip(b"\n").rstrip(b"\r\n")
    if b"\r" in frame or b"\n" in frame:
        raise Sip2Error("more than one message (a line break inside the frame)")
    if b"\x00" in frame:
        raise Sip2Error("a NUL byte inside the message")
    sequence = check = None
    trailer = _TRAILER.search(frame)
    if trailer is not None and len(frame) >= 2 + len(trailer.group(0)):
        check = trailer.group(2).decode("ascii").upper()
        through_az = frame[:trailer.end() - 4]
        if checksum(through_az) != check:
            raise ChecksumError(f"bad checksum {check}, the bytes sum to {checksum(through_az)}",
                                field="AZ")
        if trailer.group(1) is not None:
            sequence = int(trailer.group(1))
        frame = frame[:trailer.start()]
    code_bytes = frame[:2]
    if len(code_bytes) < 2 or not code_bytes.isdigit():
        raise Sip2Error(f"no message code at the start: {frame[:2]!r}")
    code = code_bytes.decode("ascii")
    cls = message_class(code)
    layout = cls.layout
    message = cls.__new__(cls)
    message.fixed, message.fields = {}, {}
    message.sequence, message.checksum = sequence, check
    pos = 2
    for spec in layout.fixed:
        raw = frame[pos:pos + spec.width]
        if len(raw) < spec.width:
            raise Sip2Error(f"{code} ({layout.name}): truncated at fixed field {spec.name} "
                            f"({spec.width} characters at position {pos})", code=code, field=spec.name)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise Sip2Error(f"{code} ({layout.name}): fixed field {spec.name} is not ASCII: {raw!r}",
                            code=code, field=spec.name) from None
        if strict and not _KIND_PATTERNS[spec.kind].fullmatch(text):
            raise Sip2Error(f"{code} ({layout.name}): fixed field {spec.name} must be "
                            f"{_KIND_HINT[spec.kind]}, got {text!r}", code=code, field=spec.name)
        message.fixed[spec.name] = text
        pos += spec.width
    rest = frame[pos:]
    while rest:
        field_id = rest[:2]
        if len(field_id) < 2 or not _FIELD_ID.fullmatch(field_id):
            raise Sip2Error(f"{code} ({layout.name}): bad field id {field_id!r} at position "
                            f"{len(frame) - len(rest)}", code=code, field=field_id.decode("latin-1"))
        end = rest.find(b"|", 2)
        raw, rest = (rest[2:], b"") if end < 0 else (rest[2:end], rest[end + 1:])
        fid = field_id.decode("ascii")
        try:
            value = raw.decode(encoding)
        except UnicodeDecodeError:
            raise Sip2Error(f"{code} ({layout.name}): field {fid} is not {encoding}: {raw!r}",
                            code=code, field=fid) from None
        message.fields.setdefault(fid, []).append(value)
    if strict:
        missing = message.missing()
        if missing:
            raise Sip2Error(f"{code} ({layout.name}): missing {', '.join(missing)}",
                            code=code, field=missing[0])
    return message


class Framer:
    """Cuts a byte stream into messages at \\r (or \\r\\n, or \\n); pure, no I/O.

    `feed(chunk)` returns the complete messages so far; more than `max_size` bytes
    with no terminator raises FrameTooLong (the caller drops the connection)."""

    def __init__(self, max_size: int = 8192) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        frames: list[bytes] = []
        while True:
            cut = min((i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0),
                      default=-1)
            if cut < 0:
                break
            frame = bytes(self._buffer[:cut])
            del self._buffer[:cut + 1]
            if len(frame) > self.max_size:
                self._buffer.clear()
                raise FrameTooLong(f"a message of {len(frame)} bytes; the limit is {self.max_size}")
            if frame:
                frames.append(frame)
        if len(self._buffer) > self.max_size:
            size = len(self._buffer)
            self._buffer.clear()
            raise FrameTooLong(f"{size} bytes with no terminator; the limit is {self.max_size}")
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)
