"""Pydantic models of every payload in PROTOCOL.md, version 1.

Unknown fields are refused (`extra="forbid"`) so that a typo in a station's payload
(`"patron_id"` for `"patron"`) is an error, not a silently missing value.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from protocol.errors import ErrorCode

PROTOCOL_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024

# A request id is the idempotency key: UUIDs in practice, but people driving the
# broker by hand with mosquitto_pub use short ids, so any safe token is accepted.
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:\-]{1,128}$")]
# What a scanner or reader produced: a barcode, an accession number, an RFID UID.
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Pin = Annotated[str, StringConstraints(pattern=r"^[0-9]{4,12}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Op(StrEnum):
    PATRON_IDENTIFY = "patron.identify"
    LOAN_CHECKOUT = "loan.checkout"
    LOAN_RETURN = "loan.return"
    LOAN_RENEW = "loan.renew"
    ITEM_INFO = "item.info"
    GATE_SYNC = "gate.sync"
    STOCKTAKE_SCAN = "stocktake.scan"


# --- request arguments -------------------------------------------------------------

class IdentifyArgs(_Model):
    card: Code
    pin: Pin | None = None


class CheckoutArgs(_Model):
    patron: Code
    item: Code


class ReturnArgs(_Model):
    item: Code


class RenewArgs(_Model):
    patron: Code
    item: Code


class ItemInfoArgs(_Model):
    item: Code


class GateSyncArgs(_Model):
    """A gate asks which items are on loan now (addition to v1, for its local set)."""


# A shelf as the library names it on its shelf labels ("Kệ 3 - Văn học", "TN-A2").
ShelfName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
MAX_STOCKTAKE_ITEMS = 200


class StocktakeScanArgs(_Model):
    """Copies seen during the open stocktake, on `shelf` if given (addition to v1).

    A pad's whole inventory or a run of barcode scans goes as one batch: the limit
    keeps the reply, a line per code, inside the payload limit."""

    items: list[Code] = Field(min_length=1, max_length=MAX_STOCKTAKE_ITEMS)
    shelf: ShelfName | None = None


Args = (IdentifyArgs | CheckoutArgs | ReturnArgs | RenewArgs | ItemInfoArgs | GateSyncArgs
        | StocktakeScanArgs)

ARGS_BY_OP: dict[Op, type[_Model]] = {
    Op.PATRON_IDENTIFY: IdentifyArgs,
    Op.LOAN_CHECKOUT: CheckoutArgs,
    Op.LOAN_RETURN: ReturnArgs,
    Op.LOAN_RENEW: RenewArgs,
    Op.ITEM_INFO: ItemInfoArgs,
    Op.GATE_SYNC: GateSyncArgs,
    Op.STOCKTAKE_SCAN: StocktakeScanArgs,
}


class RequestEnvelope(_Model):
    """A request before its arguments are read: the op decides which model they take."""

    v: Literal[1]
    id: RequestId
    op: Op
    at: AwareDatetime
    offline: bool = False
    args: dict[str, Any]


class Request(_Model):
    v: Literal[1] = 1
    id: RequestId
    op: Op
    at: AwareDatetime
    offline: bool = False
    args: Args

    @model_validator(mode="after")
    def _args_match_op(self) -> Request:
        if not isinstance(self.args, ARGS_BY_OP[self.op]):
            raise ValueError(f"args of {self.op.value} must be {ARGS_BY_OP[self.op].__name__}")
        return self


# --- results -----------------------------------------------------------------------

class PatronInfo(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str
    name: str
    kind: Literal["student", "teacher", "staff"]
    class_: str | None = Field(default=None, alias="class")


class LoanLine(_Model):
    item: str
    title: str
    due: dt.date
    overdue: bool


class IdentifyResult(_Model):
    patron: PatronInfo
    loans: list[LoanLine]
    can_borrow: int
    blocks: list[str]


class CheckoutResult(_Model):
    item: str
    title: str
    due: dt.date


class ReturnResult(_Model):
    item: str
    title: str
    was_overdue: bool
    days_late: int


class RenewResult(_Model):
    item: str
    due: dt.date
    title: str | None = None  # addition to v1: lets a station show what it renewed


class ItemInfoResult(_Model):
    item: str
    title: str
    status: str
    due: dt.date | None = None


class GateSyncResult(_Model):
    # Every item on loan (its barcode / ĐKCB) and the ledger's last `seq` at that moment:
    # the gate then applies ledger entries with a greater seq to keep the set current.
    items: list[str]
    seq: int = Field(ge=0)


# What one code of a stocktake batch was: `counted` (seen now for the first time in this
# stocktake), `already_counted` (seen before, by this code or another of the copy's) or
# `unknown` (no copy has this code). Flags, on a known copy, say what the librarian must
# look at: `withdrawn` (weeded, yet on a shelf), `on_loan` (the ledger says it is lent:
# its return was never recorded), `misplaced` (scanned on another shelf than `location`).
StocktakeOutcome = Literal["counted", "already_counted", "unknown"]
StocktakeFlag = Literal["withdrawn", "on_loan", "misplaced"]


class StocktakeLine(_Model):
    code: str                    # as the station sent it
    outcome: StocktakeOutcome
    flags: list[StocktakeFlag] = Field(default_factory=list)
    item: str | None = None      # the copy's accession number, when the code is known
    title: str | None = None     # left out when a batch's titles would not fit one payload
    location: str | None = None  # the shelf the copy belongs on, when the catalogue says


class ShelfProgress(_Model):
    shelf: str
    expected: int = Field(ge=0)  # copies the catalogue places on this shelf
    seen: int = Field(ge=0)      # of those, counted in this stocktake so far


class StocktakeScanResult(_Model):
    stocktake: int = Field(ge=1)  # its running number (part III of the general register)
    name: str
    items: list[StocktakeLine]    # one per code sent, in the order sent
    counted: int = Field(ge=0)    # copies counted in this stocktake so far, all shelves
    shelf: ShelfProgress | None = None


RESULT_BY_OP: dict[Op, type[_Model]] = {
    Op.PATRON_IDENTIFY: IdentifyResult,
    Op.LOAN_CHECKOUT: CheckoutResult,
    Op.LOAN_RETURN: ReturnResult,
    Op.LOAN_RENEW: RenewResult,
    Op.ITEM_INFO: ItemInfoResult,
    Op.GATE_SYNC: GateSyncResult,
    Op.STOCKTAKE_SCAN: StocktakeScanResult,
}


class ErrorBody(_Model):
    code: ErrorCode
    message: str


class Reply(_Model):
    v: Literal[1] = 1
    id: RequestId
    ok: bool
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None

    @model_validator(mode="after")
    def _result_xor_error(self) -> Reply:
        if self.ok and (self.result is None or self.error is not None):
            raise ValueError("a reply with ok=true carries a result and no error")
        if not self.ok and (self.error is None or self.result is not None):
            raise ValueError("a reply with ok=false carries an error and no result")
        return self

    def result_as(self, model: type[_Model]) -> Any:
        if self.result is None:
            raise ValueError("reply has no result")
        return model.model_validate(self.result)

    @classmethod
    def success(cls, request_id: str, result: _Model) -> Reply:
        return cls(id=request_id, ok=True,
                   result=result.model_dump(mode="json", by_alias=True))

    @classmethod
    def failure(cls, request_id: str, code: ErrorCode, message: str) -> Reply:
        return cls(id=request_id, ok=False, error=ErrorBody(code=code, message=message))


# --- status, events, commands, ledger, alerts --------------------------------------

DeviceState = Literal["ok", "fault", "absent"]
StationKind = Literal["kiosk", "gate", "returnbox", "desk", "server"]


# Exactly the last will of PROTOCOL.md, also sent by a station or server that stops cleanly.
OFFLINE_STATUS = b'{"v":1,"state":"offline"}'


class Status(_Model):
    v: Literal[1] = 1
    state: Literal["online", "offline", "out_of_service"]
    kind: StationKind | None = None
    version: str | None = None
    at: AwareDatetime | None = None
    devices: dict[str, DeviceState] = Field(default_factory=dict)
    outbox: int = Field(default=0, ge=0)


EventType = Annotated[str, StringConstraints(pattern=r"^[a-z]+(\.[a-z_]+)+$")]


class Event(_Model):
    v: Literal[1] = 1
    id: RequestId
    type: EventType
    at: AwareDatetime
    data: dict[str, Any] = Field(default_factory=dict)


# --- event data (additions to v1: what each event type carries in `data`) ------------

class GateAlarmData(_Model):
    # Why the gate sounded: the tag's AFI says "in stock", the item is not in the gate's
    # on-loan set, or a library tag whose data could not be read.
    reason: Literal["afi", "not_on_loan", "unreadable"]
    item: str | None = None   # the item id from the tag, when it could be read
    uid: str | None = None    # the RFID tag's UID
    afi: int | None = Field(default=None, ge=0, le=255)


class GateVisitorsData(_Model):
    # People counted by the gate's counter input between `since` and the event's `at`.
    count: int = Field(ge=0)
    since: AwareDatetime


class ReturnboxFullData(_Model):
    full: bool  # true: the bin is full, false: it was emptied


class ReturnboxUnreturnedData(_Model):
    # A book dropped in the chute that could not be returned: it is in the bin, unreturned.
    item: str
    code: str       # the protocol error code, or a station-side one (unreadable, offline)
    message: str = ""


class DeviceEventData(_Model):
    device: str                       # the device's key in the status's `devices`
    state: DeviceState
    detail: str = ""                  # what went wrong, in English, for the staff


EVENT_DATA_BY_TYPE: dict[str, type[_Model]] = {
    "gate.alarm": GateAlarmData,
    "gate.visitors": GateVisitorsData,
    "returnbox.full": ReturnboxFullData,
    "returnbox.unreturned": ReturnboxUnreturnedData,
    "device.fault": DeviceEventData,
    "device.ok": DeviceEventData,
}


class Command(_Model):
    v: Literal[1] = 1
    id: RequestId
    cmd: Literal["lock", "unlock", "say", "reload"]
    args: dict[str, Any] = Field(default_factory=dict)


class LedgerEntry(_Model):
    """One committed circulation entry, as published on the site's ledger topic."""

    v: Literal[1] = 1
    seq: int
    id: RequestId
    op: Literal["checkout", "return", "renew"]
    item: str
    title: str
    patron: str
    patron_kind: Literal["student", "teacher", "staff"]
    patron_class: str | None = None
    station: str
    station_at: AwareDatetime
    server_at: AwareDatetime
    due: dt.date | None = None
    days_late: int | None = None
    offline: bool = False
    # Addition to v1: the copy's other codes a station may read (its barcode, the item id
    # on its RFID tag), so a gate's on-loan set follows the copy whatever its tag says.
    codes: list[str] = Field(default_factory=list)
    # Addition to v1: set on an offline request's entry when the replay conflicted (the
    # copy was lent to someone else meanwhile, the reader became blocked, ...); the
    # entry records what the station did, and an alert of type `offline.conflict` follows.
    conflict: str | None = None


class Alert(_Model):
    v: Literal[1] = 1
    id: RequestId
    type: EventType
    at: AwareDatetime
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
