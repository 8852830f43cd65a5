"""The library's calendar: open days, the local date, and due dates (DOMAIN.md).

No due date falls on a closed weekday, a holiday or inside a closed period. A due date on
a closed day moves forward to the next open day, unless that walk runs into a closed
period or past the end of the school year: then the book is due on the last open day
before it, so that books come back before the summer, not after it.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from server.config import WEEKDAYS, CalendarConfig, ClosedPeriod

# Longer than any school year: a search that walks further than this has met a
# calendar with no open day in sight, which is a configuration error, not a loop.
SEARCH_LIMIT_DAYS = 400

_ONE_DAY = dt.timedelta(days=1)


class CalendarError(ValueError):
    """The calendar cannot give an answer: almost always a configuration mistake."""


class LibraryCalendar:
    def __init__(self, config: CalendarConfig) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self._closed_weekdays = frozenset(WEEKDAYS.index(day) for day in config.closed_weekdays)
        self._holidays = frozenset(config.holidays)
        self._periods = tuple(sorted(config.closed_periods, key=lambda period: period.start))
        # Computed once, so that a school year with no open day fails at start-up.
        self._year_last_open: dt.date | None = None
        if config.school_year is not None:
            year = config.school_year
            last = self._last_open_day(year.end, not_before=year.start)
            if last is None:
                raise CalendarError(
                    f"the school year {year.start:%d/%m/%Y}-{year.end:%d/%m/%Y} has no open day")
            self._year_last_open = last

    # --- days ----------------------------------------------------------------------

    def closed_period_at(self, day: dt.date) -> ClosedPeriod | None:
        for period in self._periods:
            if period.start <= day <= period.end:
                return period
        return None

    def is_open(self, day: dt.date) -> bool:
        return (day.weekday() not in self._closed_weekdays
                and day not in self._holidays
                and self.closed_period_at(day) is None)

    def local_date(self, moment: dt.datetime) -> dt.date:
        """The date on the library's wall calendar at `moment` (an aware datetime)."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("local_date needs an aware datetime, got a naive one")
        return moment.astimezone(self.zone).date()

    def school_year_last_open_day(self) -> dt.date | None:
        """The last open day of the configured school year, or None without one."""
        return self._year_last_open

    # --- due dates -----------------------------------------------------------------

    def due_date(self, start: dt.date, loan_days: int, long_loan: bool = False) -> dt.date:
        """When a loan made on `start` is due back."""
        if loan_days < 1:
            raise CalendarError(f"loan_days must be at least 1, got {loan_days}")
        last_of_year = self._year_last_open
        if long_loan and last_of_year is not None and last_of_year >= start:
            return last_of_year
        year = self.config.school_year
        year_end = year.end if year is not None else None
        plain = start + dt.timedelta(days=loan_days)
        day = plain
        # Each pass moves `day` forward or drops the year's end (once), so this ends.
        while (day - plain).days <= SEARCH_LIMIT_DAYS:
            barrier = self._barrier_at(day, year_end)
            if barrier is not None:
                pulled = self._last_open_day(barrier - _ONE_DAY, not_before=start)
                if pulled is not None:
                    return pulled
                # The loan was made inside the closed time itself (a desk loan in the
                # summer, or a calendar not yet rolled over to the new school year):
                # nothing open lies between, so it is due after the barrier instead.
                if year_end is not None and day > year_end:
                    year_end = None  # the next school year's days count from here
                period = self.closed_period_at(day)
                if period is not None:
                    day = period.end + _ONE_DAY
                continue
            if self.is_open(day):
                return day
            day += _ONE_DAY
        raise CalendarError(
            f"no open day within {SEARCH_LIMIT_DAYS} days after {plain:%d/%m/%Y}: "
            "check closed_weekdays, holidays and closed_periods")

    def _barrier_at(self, day: dt.date, year_end: dt.date | None) -> dt.date | None:
        """The first day of the closed time that `day` falls in, if any."""
        barriers = []
        period = self.closed_period_at(day)
        if period is not None:
            barriers.append(period.start)
        if year_end is not None and day > year_end:
            barriers.append(year_end + _ONE_DAY)
        return min(barriers, default=None)

    def _last_open_day(self, day: dt.date, not_before: dt.date) -> dt.date | None:
        """The last open day in [not_before, day], or None if there is none."""
        latest = day
        for _ in range(SEARCH_LIMIT_DAYS):
            if day < not_before:
                return None
            if self.is_open(day):
                return day
            day -= _ONE_DAY
        raise CalendarError(
            f"no open day within {SEARCH_LIMIT_DAYS} days up to {latest:%d/%m/%Y}: "
            "check closed_weekdays, holidays and closed_periods")


def format_date(day: dt.date) -> str:
    """Dates as people in Vietnam write them: dd/mm/yyyy."""
    return f"{day:%d/%m/%Y}"
