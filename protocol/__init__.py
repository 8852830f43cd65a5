"""The station protocol v1 as code: topics, payload models, error codes.

Both the server and every station import this package; it is the one place where the
contract of PROTOCOL.md lives. No I/O here, and nothing of ours is imported.
"""

from protocol.errors import ErrorCode, ProtocolError, default_message
from protocol.models import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    Alert,
    CheckoutArgs,
    CheckoutResult,
    Command,
    ErrorBody,
    Event,
    IdentifyArgs,
    IdentifyResult,
    ItemInfoArgs,
    ItemInfoResult,
    LedgerEntry,
    LoanLine,
    Op,
    PatronInfo,
    RenewArgs,
    RenewResult,
    Reply,
    Request,
    ReturnArgs,
    ReturnResult,
    Status,
)
from protocol.codec import encode, parse_request, parse_reply, parse_model

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "Alert",
    "CheckoutArgs",
    "CheckoutResult",
    "Command",
    "ErrorBody",
    "ErrorCode",
    "Event",
    "IdentifyArgs",
    "IdentifyResult",
    "ItemInfoArgs",
    "ItemInfoResult",
    "LedgerEntry",
    "LoanLine",
    "Op",
    "PatronInfo",
    "ProtocolError",
    "RenewArgs",
    "RenewResult",
    "Reply",
    "Request",
    "ReturnArgs",
    "ReturnResult",
    "Status",
    "default_message",
    "encode",
    "parse_model",
    "parse_reply",
    "parse_request",
]
