"""Today: loans, returns and visits today and this month, the busiest stations, the top
titles, and a bar per day of the month, all in the site's time zone.

Counts read the ledger by `station_at` (when it happened: an offline replay counts on
the day the book left, not the day the station reconnected) and leave out the entries
that changed no loan (`NOT_APPLIED` conflicts). Visits are the gates' `visits` rows by
the start of their interval. Charts are inline SVG drawn by the template: no script.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.circulation import NOT_APPLIED
from server.models import Copy, LedgerEntry, LedgerOp, StaffUser, Title, Visit
from server.web.auth import Auth
from server.web.context import WebContext

TOP = 5


@dataclass(frozen=True)
class Bar:
    label: str
    value: int


@dataclass(frozen=True)
class Period:
    start: dt.datetime   # UTC, inclusive
    end: dt.datetime     # UTC, exclusive
    loans: int
    returns: int
    renewals: int
    visits: int
    stations: list[Bar]
    titles: list[Bar]


@dataclass(frozen=True)
class Day:
    day: dt.date
    loans: int
    returns: int


@dataclass
class Summary:
    today: dt.date
    day: Period
    month: Period
    days: list[Day] = field(default_factory=list)

    @property
    def busiest_day(self) -> int:
        return max((max(d.loans, d.returns) for d in self.days), default=0)


def local_bounds(first: dt.date, after: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[local midnight of `first`, local midnight of `after`) as UTC instants."""
    def midnight(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.timezone.utc)
    return midnight(first), midnight(after)


def _applied() -> Any:
    return or_(LedgerEntry.conflict.is_(None),
               LedgerEntry.conflict.not_in([c.value for c in NOT_APPLIED]))


def period(db: Session, start: dt.datetime, end: dt.datetime, top: int = TOP) -> Period:
    within = (LedgerEntry.station_at >= start, LedgerEntry.station_at < end, _applied())
    ops = dict(db.execute(select(LedgerEntry.op, func.count()).where(*within)
                          .group_by(LedgerEntry.op)).all())
    visits = db.scalar(select(func.coalesce(func.sum(Visit.count), 0))
                       .where(Visit.since >= start, Visit.since < end)) or 0
    count = func.count().label("n")
    stations = db.execute(select(LedgerEntry.station, count).where(*within)
                          .group_by(LedgerEntry.station)
                          .order_by(count.desc(), LedgerEntry.station).limit(top)).all()
    titles = db.execute(select(Title.title, count).select_from(LedgerEntry)
                        .join(Copy, Copy.id == LedgerEntry.copy_id)
                        .join(Title, Title.id == Copy.title_id)
                        .where(*within, LedgerEntry.op == LedgerOp.CHECKOUT.value)
                        .group_by(Title.id, Title.title)
                        .order_by(count.desc(), Title.title).limit(top)).all()
    return Period(start=start, end=end, loans=ops.get(LedgerOp.CHECKOUT.value, 0),
                  returns=ops.get(LedgerOp.RETURN.value, 0),
                  renewals=ops.get(LedgerOp.RENEW.value, 0), visits=int(visits),
                  stations=[Bar(name, n) for name, n in stations],
                  titles=[Bar(title, n) for title, n in titles])


def per_day(db: Session, first: dt.date, after: dt.date, zone: ZoneInfo) -> list[Day]:
    """Loans and returns for each local day in [first, after)."""
    start, end = local_bounds(first, after, zone)
    counts: Counter[tuple[dt.date, str]] = Counter()
    # A month of one school's ledger is a few thousand rows: bucketing them by local day
    # here is simpler than time-zone arithmetic in two SQL dialects.
    for at, op in db.execute(select(LedgerEntry.station_at, LedgerEntry.op)
                             .where(LedgerEntry.station_at >= start, LedgerEntry.station_at < end,
                                    _applied())):
        counts[(at.astimezone(zone).date(), op)] += 1
    days = []
    day = first
    while day < after:
        days.append(Day(day, counts[(day, LedgerOp.CHECKOUT.value)],
                        counts[(day, LedgerOp.RETURN.value)]))
        day += dt.timedelta(days=1)
    return days


def summary(db: Session, now: dt.datetime, zone: ZoneInfo) -> Summary:
    today = now.astimezone(zone).date()
    first = today.replace(day=1)
    next_month = (first + dt.timedelta(days=32)).replace(day=1)
    day_start, day_end = local_bounds(today, today + dt.timedelta(days=1), zone)
    month_start, month_end = local_bounds(first, next_month, zone)
    return Summary(today=today, day=period(db, day_start, day_end),
                   month=period(db, month_start, month_end),
                   days=per_day(db, first, next_month, zone))


class TodayPage:
    def __init__(self, ctx: WebContext, auth: Auth) -> None:
        self.ctx = ctx
        self.auth = auth

    async def today(self, request: Request, user: StaffUser) -> Response:
        now = self.ctx.clock()

        def load() -> Summary:
            with self.ctx.sessions() as db:
                return summary(db, now, self.ctx.zone)

        return self.ctx.render(request, "staff/today.html",
                               {"s": await run_in_threadpool(load)})

    def routes(self) -> list[BaseRoute]:
        return [Route("/staff/today", self.auth.page("viewer")(self.today), methods=["GET"])]


__all__ = ["Bar", "Day", "Period", "Summary", "TodayPage", "local_bounds", "per_day", "period",
           "summary"]
