"""What a station's session needs from the library: one request in, one answer out.

The MQTT link (`kiosk/link.py`) answers live; the store-and-forward backend
(`kiosk/offline.py`) wraps it and, while the library cannot be reached, answers from
the station itself by its offline policy; the SIP2 backend (`kiosk/sip2_backend.py`)
asks any SIP2 library system (Koha, Evergreen, FOLIO, our own server's gateway). The
session never knows which transport carries its requests, only whether an answer is
the server's or the station's, and what the library behind it can do at all
(`supports`): what it cannot do is not offered to the reader.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel

from protocol import Op, Reply


class BackendUnavailable(Exception):
    """The library could not be reached in time; the request may or may not have arrived."""


@dataclass(frozen=True)
class AcceptedOffline:
    """A write the station accepted while offline: it is committed to the outbox and
    will reach the server, with this id and time, when the link returns. The server's
    answer (and any conflict) comes later, to the librarian."""

    request_id: str
    op: Op
    at: dt.datetime


@dataclass(frozen=True)
class CachedPatron:
    """A card the station knows from an earlier identify, answered offline.

    No name, no class, no loans: only what serving offline needs.
    """

    patron: str  # what checkouts offline send as `patron`: the card as it was read
    kind: Literal["student", "teacher", "staff"]
    can_borrow: int
    blocks: tuple[str, ...]


Answer = Reply | AcceptedOffline | CachedPatron


class Backend(Protocol):
    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Answer:
        """Send one request with a fresh id and wait for its answer.

        A live backend answers with the server's `Reply`; a store-and-forward one may
        answer `AcceptedOffline` (a checkout or return) or `CachedPatron` (an identify).
        Raises BackendUnavailable when the library cannot answer and nothing was accepted.
        """
        ...


class Capable(Protocol):
    """A backend that does not answer every operation says which ones it does."""

    def supports(self, op: Op) -> bool:
        """Whether the library behind this backend can answer `op` at all (not whether
        it can be reached now)."""
        ...


def supports(backend: object, op: Op) -> bool:
    """Whether `backend` answers `op`: a backend without `supports` (our server, over
    MQTT, with or without store and forward) answers every operation of the protocol."""
    method = getattr(backend, "supports", None)
    return True if method is None else bool(method(op))
