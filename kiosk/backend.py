"""What a station's session needs from the library: one request in, one reply out.

The MQTT link (`kiosk/link.py`) is the production backend; the session never knows
which transport carries its requests.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from protocol import Op, Reply


class BackendUnavailable(Exception):
    """The library could not be reached in time; the request may or may not have arrived."""


class Backend(Protocol):
    def request(self, op: Op, args: BaseModel, *, timeout: float | None = None) -> Reply:
        """Send one request with a fresh id and wait for its reply.

        Raises BackendUnavailable when no reply came within the timeout.
        """
        ...
