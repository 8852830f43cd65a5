"""The server's wall clock for tests: set to a chosen moment and moved by hand."""

from __future__ import annotations

import datetime as dt


class WallClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now.astimezone(dt.timezone.utc)

    def advance(self, days: int = 0, hours: int = 0) -> None:
        self.now += dt.timedelta(days=days, hours=hours)
