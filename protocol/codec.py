"""Bytes on the wire <-> payload models, with one clear error per rejection."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from protocol.errors import ProtocolError
from protocol.models import (
    ARGS_BY_OP,
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    Reply,
    Request,
    RequestEnvelope,
)

M = TypeVar("M", bound=BaseModel)


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


def _load_object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"payload is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"payload is a JSON {type(data).__name__}, not an object")
    return data


def _usable_id(data: dict[str, Any]) -> str | None:
    value = data.get("id")
    try:
        Reply(id=value, ok=False, error={"code": "bad_request", "message": "-"})
    except ValidationError:
        return None
    return value


def describe(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem, naming the field path: `args.item: Field required`."""
    parts = []
    for err in exc.errors(include_url=False):
        where = prefix + ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_request(payload: bytes) -> Request:
    data = _load_object(payload)
    request_id = _usable_id(data)
    if data.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unknown protocol version v={data.get('v')!r}; this server speaks v=1",
                            request_id)
    try:
        envelope = RequestEnvelope.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(describe(exc), request_id) from None
    try:
        args = ARGS_BY_OP[envelope.op].model_validate(envelope.args)
    except ValidationError as exc:
        raise ProtocolError(describe(exc, prefix="args."), request_id) from None
    return Request(v=envelope.v, id=envelope.id, op=envelope.op, at=envelope.at,
                   offline=envelope.offline, args=args)


def parse_reply(payload: bytes) -> Reply:
    return parse_model(Reply, payload)


def parse_model(model: type[M], payload: bytes) -> M:
    data = _load_object(payload)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(describe(exc), _usable_id(data)) from None
